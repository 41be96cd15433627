"""Each provider's documented example (and the payloads the mapping fixes are about), signed
as that provider signs it, posted to the receiver and carried by the worker: the right person
ends up in the Close emulator's lead, or the door refuses it with the reason."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from redis.asyncio import Redis

from service.config.settings import Settings
from service.queue import Queue
from tests.conftest import emulator_state, running_worker, sources_from, wait_for_record
from tests.mapping import PAYLOADS
from tests.receiver import signers
from tests.receiver.signers import receiver

SECRET = "provider-signing-secret"
JSON = {"Content-Type": "application/json"}


def _google(body: bytes) -> tuple[bytes, dict[str, str]]:
    data = json.loads(body)
    data["google_key"] = SECRET
    return json.dumps(data).encode(), {}


def _signed(sign: Callable[[str, bytes], dict[str, str]]) -> Callable[[bytes], Any]:
    return lambda body: (body, sign(SECRET, body))


@dataclass(frozen=True)
class Example:
    payload: str
    preset: str
    sign: Callable[[bytes], tuple[bytes, dict[str, str]]]
    email: str
    name: str
    region: str | None = "US"


CALENDLY = _signed(lambda s, b: signers.stripe_style(s, b, "Calendly-Webhook-Signature"))
EXAMPLES = [
    Example("typeform.json", "typeform", _signed(signers.typeform), "laura@example.com", "Laura"),
    Example(
        "typeform-booking.json", "typeform", _signed(signers.typeform), "laura@example.com", "Laura"
    ),
    Example("tally.json", "tally", _signed(signers.tally), "alice.martin@example.com", "Acme SAS"),
    Example(
        "tally-choices.json", "tally", _signed(signers.tally), "lea.dubois@example.fr", "Léa Dubois"
    ),
    Example(
        "webflow.json",
        "webflow",
        _signed(signers.webflow),
        "zaphod@heartofgold.ai",
        "Zaphod Beeblebrox",
    ),
    Example(
        "webflow-test-delivery.json",
        "webflow",
        _signed(signers.webflow),
        "ford@betelgeuse.example",
        "Ford Prefect",
        None,
    ),
    Example(
        "webflow-v1.json", "webflow", _signed(signers.webflow), "some.one@home.com", "Some One"
    ),
    Example("calcom.json", "calcom", _signed(signers.calcom), "john.doe@example.com", "John Doe"),
    Example("calendly.json", "calendly", CALENDLY, "test@example.com", "Acme Inc"),
    Example("google-ads.json", "google-ads", _google, "test@example.com", "FirstName LastName"),
    Example(
        "netlify.json",
        "netlify",
        _signed(signers.netlify),
        "raymondcamden+dloct6a@gmail.com",
        "Raymond Camden",
    ),
]


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.payload for e in EXAMPLES])
async def test_documented_example_signed_as_the_provider_signs_it_becomes_its_lead(
    example: Example,
    settings: Settings,
    redis: Redis,
    queue: Queue,
    emulator: TestServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PROVIDER_SECRET", SECRET)
    source = {
        "kind": "webhook",
        "preset": example.preset,
        "default_region": example.region,
        "auth": {"secrets": ["env:PROVIDER_SECRET"]},
    }
    body, headers = example.sign((PAYLOADS / example.payload).read_bytes())
    async with receiver(settings, redis, {"hook": source}) as client:
        answer = await client.post("/hooks/hook", data=body, headers={**JSON, **headers})
        assert answer.status == 202, await answer.text()
        sub_id = (await answer.json())["id"]
    async with running_worker(settings, sources_from({"sources": {"hook": source}}), redis):
        record = await wait_for_record(queue, sub_id)
    lead = emulator_state(emulator).leads[record.lead_id or ""]
    assert lead["name"] == example.name
    emails = [e["email"] for c in lead["contacts"] for e in c.get("emails", [])]
    assert emails == [example.email]
