"""Partner webhooks at the door: what a refused sender sees, what operators see, where secrets
come from, and how a scheme's event id makes a retried delivery one submission."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from service.config.settings import Settings
from service.config.sources import parse_sources
from service.errors import ConfigError
from service.keys import Keys
from service.receiver.state import METRICS
from tests.receiver import signers
from tests.receiver.signers import JSON, problem_of, receiver
from tests.test_cli import run_cli

SECRET = "gh-secret-4242"


def github_source(**auth: Any) -> dict[str, Any]:
    return {
        "gh": {
            "kind": "webhook",
            "preset": "generic-json",
            "auth": {"scheme": "github", "secrets": ["env:GH_SECRET"], **auth},
        }
    }


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GH_SECRET", SECRET)


async def test_every_refusal_looks_the_same_but_is_logged_and_counted(
    settings: Settings, redis: Redis, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    body = b'{"email": "a@example.com"}'
    good = signers.github(SECRET, body)
    attempts = {
        "missing-signature": {},
        "malformed-signature": {"X-Hub-Signature-256": "sha256=not-hex"},
        "bad-signature": signers.github("guessed", body),
    }
    caplog.set_level(logging.WARNING)
    async with receiver(settings, redis, github_source()) as client:
        answers = []
        for headers in attempts.values():
            response = await client.post("/hooks/gh", data=body, headers={**JSON, **headers})
            answers.append(await problem_of(response, 401, "unauthorized"))
        registry = client.app[METRICS].registry
        counts = {
            ("gh", reason): registry.get_sample_value(
                "intake_auth_failures_total", {"source": "gh", "reason": reason}
            )
            for reason in attempts
        }
        ok = await client.post("/hooks/gh", data=body, headers={**JSON, **good})
        assert ok.status == 202
    assert all(answer == answers[0] for answer in answers)  # nothing tells which check failed
    assert counts == {("gh", reason): 1 for reason in attempts}
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for reason in attempts:
        assert f"source gh: request refused by github auth: {reason}" in logged
    assert SECRET not in logged and good["X-Hub-Signature-256"] not in logged
    assert await redis.xlen(keys.stream) == 1


async def test_scheme_event_id_makes_a_redelivery_one_submission(
    settings: Settings, redis: Redis, keys: Keys
) -> None:
    async with receiver(settings, redis, github_source()) as client:
        sent = []
        # Bodies differ (a retry counter), so only the delivery id can tell they are one.
        for n, delivery in enumerate(("d-1", "d-1", "d-2")):
            body = json.dumps({"email": "a@example.com", "attempt": n}).encode()
            headers = signers.github(SECRET, body, delivery=delivery)
            response = await client.post("/hooks/gh", data=body, headers={**JSON, **headers})
            sent.append((response.status, await response.json()))
    assert [status for status, _ in sent] == [202, 200, 202]
    assert sent[1][1] == {"id": sent[0][1]["id"], "duplicate": True}
    assert await redis.xlen(keys.stream) == 2


async def test_stripe_event_id_comes_from_the_verified_body(
    settings: Settings, redis: Redis, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRIPE_SECRET", "whsec_abc")
    auth = {"scheme": "stripe", "secrets": ["env:STRIPE_SECRET"]}
    sources = {"st": {"kind": "webhook", "preset": "generic-json", "auth": auth}}
    async with receiver(settings, redis, sources) as client:
        statuses = []
        # Stripe retries an event with a new signature time; the event id stays the same.
        for n, t in enumerate((int(time.time()) - 60, int(time.time()))):
            body = json.dumps({"id": "evt_1", "email": "s@example.com", "attempt": n}).encode()
            headers = signers.stripe_style("whsec_abc", body, t=t)
            response = await client.post("/hooks/st", data=body, headers={**JSON, **headers})
            statuses.append(response.status)
    assert statuses == [202, 200]
    assert await redis.xlen(keys.stream) == 1


async def test_a_secret_file_with_a_trailing_newline_works(
    settings: Settings, redis: Redis, tmp_path: Path
) -> None:
    secret_file = tmp_path / "gh"
    secret_file.write_text("from-a-file\n")  # as `kubectl create secret --from-file` leaves it
    sources = github_source(secrets=[f"file:{secret_file}", "env:GH_SECRET"])
    body = b'{"email": "a@example.com"}'
    async with receiver(settings, redis, sources) as client:
        headers = signers.github("from-a-file", body)
        response = await client.post("/hooks/gh", data=body, headers={**JSON, **headers})
        assert response.status == 202


def test_a_missing_secret_stops_the_start_with_its_key_path() -> None:
    with pytest.raises(ConfigError) as info:
        parse_sources({"sources": github_source(secrets=["env:NOT_SET_ANYWHERE"])})
    [issue] = info.value.issues
    assert issue.path == "sources.gh.auth.secrets"
    assert "NOT_SET_ANYWHERE is not set" in issue.message


def test_a_secret_written_inline_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        parse_sources({"sources": github_source(secrets=["hunter2"])})
    [issue] = info.value.issues
    assert issue.path == "sources.gh.auth.secrets[0]"
    assert "env:VARIABLE_NAME or file:" in issue.message and "hunter2" not in issue.message


async def test_refuse_requests_starts_the_source_closed(
    settings: Settings, redis: Redis, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    sources = github_source(secrets=["env:NOT_SET_ANYWHERE"], if_secret_missing="refuse-requests")
    sources["open"] = {"kind": "webhook", "preset": "generic-json"}
    body = b'{"email": "a@example.com"}'
    caplog.set_level(logging.WARNING)
    async with receiver(settings, redis, sources) as client:
        headers = signers.github("", body)
        response = await client.post("/hooks/gh", data=body, headers={**JSON, **headers})
        await problem_of(response, 401, "unauthorized")
        refused = client.app[METRICS].registry.get_sample_value(
            "intake_auth_failures_total", {"source": "gh", "reason": "no-secret"}
        )
        assert refused == 1
        assert (await client.post("/hooks/open", data=body, headers=JSON)).status == 202
    assert "every request is refused" in caplog.text and "env:NOT_SET_ANYWHERE" in caplog.text
    assert await redis.xlen(keys.stream) == 1


def test_a_preset_gives_the_scheme_and_the_source_its_secret() -> None:
    sources = parse_sources(
        {
            "sources": {
                "tf": {
                    "kind": "webhook",
                    "preset": "typeform",
                    "auth": {"secrets": ["env:GH_SECRET"]},
                },
                "wf": {
                    "kind": "webhook",
                    "preset": "webflow",
                    "auth": {"secrets": ["env:GH_SECRET"], "tolerance_seconds": 60},
                },
                "own": {
                    "kind": "webhook",
                    "preset": "typeform",
                    "auth": {"scheme": "bearer", "secrets": ["env:GH_SECRET"]},
                },
            }
        }
    )
    tf, wf, own = (sources.get(n) for n in ("tf", "wf", "own"))
    assert tf is not None and tf.auth is not None and wf is not None and wf.auth is not None
    assert tf.auth.model_dump(include={"scheme", "header", "prefix", "encoding"}) == {
        "scheme": "typeform",
        "header": "Typeform-Signature",
        "prefix": "sha256=",
        "encoding": "base64",
    }
    assert (wf.auth.tolerance_seconds, wf.auth.timestamp_unit) == (60, "ms")
    assert own is not None and own.auth is not None and own.auth.scheme == "bearer"


def test_auth_without_a_scheme_or_preset_says_which_schemes_exist() -> None:
    with pytest.raises(ConfigError) as info:
        parse_sources(
            {"sources": {"x": {"kind": "webhook", "auth": {"secrets": ["env:GH_SECRET"]}}}}
        )
    [issue] = info.value.issues
    assert issue.path == "sources.x.auth"
    assert "standard-webhooks" in issue.message and "hubspot-v3" in issue.message


async def test_check_config_and_serve_list_a_missing_secret(tmp_path: Path) -> None:
    sources = tmp_path / "sources.yaml"
    sources.write_text(
        "sources:\n  gh:\n    kind: webhook\n    preset: generic-json\n"
        "    auth: {scheme: github, secrets: [env:GH_WEBHOOK_SECRET]}\n"
    )
    code, _, err = await run_cli("check-config", str(sources))
    assert code == 2
    assert f"{sources}: sources.gh.auth.secrets" in err and "GH_WEBHOOK_SECRET" in err
    env = {"INTAKE_SOURCES_FILE": str(sources), "INTAKE_REDIS_URL": "redis://127.0.0.1:1/0"}
    code, _, err = await run_cli("serve", env=env)
    assert code == 2 and "sources.gh.auth.secrets" in err
    code, out, _ = await run_cli("check-config", str(sources), env={"GH_WEBHOOK_SECRET": "s"})
    assert code == 0 and "OK" in out
