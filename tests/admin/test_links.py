"""Identity links in the admin plane: ``GET /v1/links`` (filter, paging, its 400s and token),
their counts in ``GET /v1/counts``, and the dashboard's possible duplicates page.

One test makes a real flagged link through the worker and the Close emulator (two submissions
with disjoint identities make a lead each, a third with the email of one and the phone of the
other leads to both); the rest record links with ``Links.record``, as the worker's link step
does.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from service.config.settings import Settings
from service.config.sources import Sources
from service.keys import Keys, identity_key
from service.queue import Queue
from service.receiver.app import create_app
from tests.conftest import ADMIN_TOKEN, enqueue, running_worker, sources_from, wait_for_record

PROBLEM = "application/problem+json"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
LEAD_PAGE = "https://app.close.com/lead/{}/"
SOURCES = yaml.safe_load((Path(__file__).parents[1] / "sources.yaml").read_text())
E1, E2 = "mia@example.com", "mia.work@example.com"
P1, P2 = "+14155550101", "+14155550102"

Client = TestClient[Any, Any]


def flagging() -> Sources:
    data: dict[str, Any] = copy.deepcopy(SOURCES)
    data["sources"]["partner"]["dedup"] = {"link": "flag"}
    return sources_from(data)


@pytest.fixture
async def flag_client(settings: Settings, redis: Redis) -> AsyncIterator[Client]:
    app = create_app(settings, flagging(), redis=redis)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client


def person(email: str, phone: str, note: str) -> dict[str, Any]:
    return {"contact": {"email": email, "phone": phone, "name": "Mia Lind"}, "notes": note}


def link_of(a: str, b: str, sub_id: str = "sub_x") -> dict[str, Any]:
    identities = {identity_key("email", f"{a}@example.com"): a, identity_key("phone", b): b}
    return {"leads": [a, b], "via": "search", "submission": sub_id, "identities": identities}


async def links(client: Client, query: str = "") -> dict[str, Any]:
    response = await client.get(f"/v1/links{query}", headers=ADMIN)
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


def pairs_of(body: dict[str, Any]) -> list[list[str]]:
    return [[lead["id"] for lead in link["leads"]] for link in body["links"]]


async def counts(client: Client) -> dict[str, int]:
    body = await (await client.get("/v1/counts", headers=ADMIN)).json()
    return dict(body["links"])


async def test_a_flagged_link_from_the_worker_is_listed_counted_and_shown(
    flag_client: Client, queue: Queue, settings: Settings, redis: Redis, emulator: TestServer
) -> None:
    sources = flagging()
    async with running_worker(settings, sources, redis):
        a = await wait_for_record(queue, await enqueue(queue, person(E1, P2, "first")))
        b = await wait_for_record(queue, await enqueue(queue, person(E2, P1, "second")))
        third = await enqueue(queue, person(E1, P1, "third"))
        await wait_for_record(queue, third, ("attached",))
    assert a.lead_id and b.lead_id and a.lead_id != b.lead_id

    body = await links(flag_client)
    [link] = body["links"]
    assert sorted(lead["id"] for lead in link["leads"]) == sorted([a.lead_id, b.lead_id])
    assert {lead["url"] for lead in link["leads"]} == {
        LEAD_PAGE.format(a.lead_id),
        LEAD_PAGE.format(b.lead_id),
    }
    assert link["status"] == "flagged" and link["policy"] == "flag"
    assert link["source"] == "partner" and link["submission"] == third
    assert link["reason"] is None and link["kept"] is None and link["merged"] is None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", link["first_seen_at"])
    assert link["updated_at"] >= link["first_seen_at"]
    assert body["more"] is False and body["next_before"] is None and body["limit"] == 100
    # Identity keys, never the person's email or phone.
    text = json.dumps(body)
    for secret in (E1, E2, P1, P2, "mia", "4155550"):
        assert secret not in text
    assert set(link["identities"]) <= {
        identity_key("email", E1),
        identity_key("email", E2),
        identity_key("phone", P1),
        identity_key("phone", P2),
    }
    assert (await links(flag_client, "?status=merged"))["links"] == []
    assert await counts(flag_client) == {"flagged": 1, "merged": 0}

    # The dashboard: the overview's count links to the page, which shows the pair.
    await flag_client.post("/admin/login", data={"token": ADMIN_TOKEN})
    overview = await (await flag_client.get("/admin")).text()
    card = r'href="/admin/links"[^>]*>possible duplicates<b data-links="flagged">1<'
    assert re.search(card, overview)
    response = await flag_client.get("/admin/links")
    assert response.status == 200
    page = await response.text()
    for lead_id in (a.lead_id, b.lead_id):
        assert f'href="{LEAD_PAGE.format(lead_id)}"' in page
    assert f'href="/admin/submissions/{third}"' in page
    assert "Possible duplicates" in page and E1 not in page and P1 not in page


async def test_the_listing_filters_by_status_and_pages_newest_first(
    client: Client, queue: Queue
) -> None:
    for n in range(5):
        await queue.links.record(link_of(f"lead_a{n}", f"lead_b{n}"), "flagged", policy="flag")
    # The second one merged later: it moves from flagged to merged, keeping when it was first seen.
    await queue.links.record(
        link_of("lead_a1", "lead_b1"), "merged", policy="merge", kept="lead_a1", merged="lead_b1"
    )
    await queue.links.record(
        link_of("lead_a3", "lead_b3"),
        "flagged",
        policy="merge",
        reason="lead lead_a3 was not created by this service",
    )
    newest_first = [[f"lead_a{n}", f"lead_b{n}"] for n in reversed(range(5))]
    everything = await links(client)
    assert pairs_of(everything) == newest_first
    merged = await links(client, "?status=merged")
    assert pairs_of(merged) == [["lead_a1", "lead_b1"]]
    [row] = merged["links"]
    assert row["kept"] == "lead_a1" and row["merged"] == "lead_b1" and row["policy"] == "merge"
    assert row["first_seen_at"] < row["updated_at"]
    flagged = await links(client, "?status=flagged")
    assert pairs_of(flagged) == [p for p in newest_first if p[0] != "lead_a1"]
    refused = flagged["links"][1]
    assert refused["reason"] == "lead lead_a3 was not created by this service"
    assert await counts(client) == {"flagged": 4, "merged": 1}

    # Pages of two, each picking up where the last ended; nothing twice, nothing missed.
    seen: list[list[str]] = []
    query = "?status=flagged&limit=2"
    while True:
        page = await links(client, query)
        assert len(page["links"]) <= 2 and page["limit"] == 2
        seen += pairs_of(page)
        if not page["more"]:
            assert page["next_before"] is None
            break
        query = f"?status=flagged&limit=2&before={page['next_before']}"
    assert seen == pairs_of(flagged)
    # A link arriving meanwhile goes on top; the next pages are unchanged by it.
    first = await links(client, "?limit=2")
    await queue.links.record(link_of("lead_new", "lead_newer"), "flagged", policy="flag")
    second = await links(client, f"?limit=2&before={first['next_before']}")
    assert pairs_of(first) + pairs_of(second) == newest_first[:4]


async def test_an_expired_link_leaves_the_listing_and_the_counts(
    client: Client, queue: Queue, redis: Redis, keys: Keys
) -> None:
    for n in range(3):
        await queue.links.record(link_of(f"lead_a{n}", f"lead_b{n}"), "flagged", policy="flag")
    assert await counts(client) == {"flagged": 3, "merged": 0}
    await redis.delete(keys.link("lead_a1|lead_b1"))  # as its expiry would
    body = await links(client, "?limit=2")
    assert pairs_of(body) == [["lead_a2", "lead_b2"], ["lead_a0", "lead_b0"]]
    assert body["more"] is False
    assert await counts(client) == {"flagged": 2, "merged": 0}


async def test_links_first_seen_before_the_retention_are_pruned_from_the_counts(
    queue: Queue, redis: Redis, keys: Keys
) -> None:
    """The counts never scan; a pair older than the retention whose JSON is gone is dropped."""
    await queue.links.record(link_of("lead_a", "lead_b"), "flagged", policy="flag")
    await queue.links.record(link_of("lead_c", "lead_d"), "flagged", policy="flag")
    old = 1_000_000.0  # first seen long before the retention began
    await redis.zadd(keys.links, {"lead_a|lead_b": old, "lead_c|lead_d": old})
    await redis.zadd(keys.links_in("flagged"), {"lead_a|lead_b": old, "lead_c|lead_d": old})
    await redis.delete(keys.link("lead_a|lead_b"))
    assert await queue.links.counts() == {"flagged": 1, "merged": 0}
    assert await redis.zrange(keys.links, 0, -1) == ["lead_c|lead_d"]


async def test_links_need_the_token_and_the_page_a_session(client: Client, queue: Queue) -> None:
    await queue.links.record(link_of("lead_a", "lead_b", "sub_one"), "flagged", policy="flag")
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response = await client.get("/v1/links", headers=headers)
        assert response.status == 401 and response.content_type == PROBLEM
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    page = await client.get("/admin/links", allow_redirects=False)
    assert page.status == 303 and page.headers["Location"] == "/admin?next=/admin/links"
    assert "lead_a" not in await page.text()
    login = await client.post(
        "/admin/login", data={"token": ADMIN_TOKEN, "next": "/admin/links"}, allow_redirects=False
    )
    assert login.headers["Location"] == "/admin/links"  # back where the person was going
    text = await (await client.get("/admin/links")).text()
    assert 'data-leads="lead_a|lead_b"' in text and 'href="/admin/submissions/sub_one"' in text


async def test_the_dashboard_pages_through_flagged_links_only(client: Client, queue: Queue) -> None:
    for n in range(101):
        await queue.links.record(link_of(f"lead_a{n}", f"lead_b{n}"), "flagged", policy="flag")
    await queue.links.record(
        link_of("lead_m", "lead_n"), "merged", policy="merge", kept="lead_m", merged="lead_n"
    )
    await client.post("/admin/login", data={"token": ADMIN_TOKEN})
    first = await (await client.get("/admin/links")).text()
    assert first.count('<tr class="link"') == 100
    assert "lead_m" not in first and 'data-leads="lead_a100|lead_b100"' in first
    older = re.search(r'id="older" href="(/admin/links\?before=[0-9.]+)"', first)
    assert older, first
    second = await (await client.get(older[1])).text()
    assert second.count('<tr class="link"') == 1 and 'data-leads="lead_a0|lead_b0"' in second
    assert 'id="older"' not in second
    bad = await client.get("/admin/links?before=soon")
    assert bad.status == 400
