"""The admin API: listing with filters, replaying many, erasing, counts, and its bearer tokens.

Records are put in their states with the queue's own transitions (no worker runs here); the
worker's part is covered in tests/worker and the dashboard's browser test.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr
from redis.asyncio import Redis

from service.close.pacing import GROUPS
from service.config.settings import Settings
from service.config.sources import Sources
from service.dev.redis_server import RedisServer
from service.keys import GROUP, Keys
from service.queue import Progress, Queue, Transition
from service.receiver.app import create_app
from tests.conftest import ADMIN_TOKEN

PROBLEM = "application/problem+json"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

Client = TestClient[Any, Any]


async def post(client: Client, email: str, source: str = "partner") -> str:
    if source == "website":
        response = await client.post(f"/hooks/{source}", data={"name": "A B", "email": email})
    else:
        body = {"contact": {"name": "Ann Lee", "email": email}, "notes": "hello"}
        response = await client.post(f"/hooks/{source}", json=body)
    assert response.status == 202, await response.text()
    return str((await response.json())["id"])


async def finish(queue: Queue, sub_id: str, state: str, source: str = "partner") -> None:
    """Put a submission in a final state the way a worker records it."""
    error = {"error": "Close refused the lead", "status": 400} if state == "dead" else None
    lead_id = f"lead_{sub_id[-6:]}" if state == "created" else None
    await queue.steps.apply(
        Transition(
            sub_id,
            state,  # type: ignore[arg-type]
            lead_id=lead_id,
            last_error=error,
            dead=state == "dead",
            source=source,
            attempts_delta=1,
        )
    )


async def problem_of(response: Any, status: int, slug: str) -> dict[str, Any]:
    assert response.status == status, await response.text()
    assert response.content_type == PROBLEM
    body: dict[str, Any] = await response.json(content_type=PROBLEM)
    assert body["type"] == f"urn:lead-intake:problem:{slug}"
    return body


async def listing(client: Client, query: str = "") -> dict[str, Any]:
    response = await client.get(f"/v1/submissions{query}", headers=ADMIN)
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


def ids_of(body: dict[str, Any]) -> list[str]:
    return [row["id"] for row in body["submissions"]]


# -- tokens -------------------------------------------------------------------------------------

ROUTES = [
    ("GET", "/v1/submissions"),
    ("GET", "/v1/counts"),
    ("GET", "/v1/links"),
    ("GET", "/v1/submissions/{id}"),
    ("DELETE", "/v1/submissions/{id}"),
    ("POST", "/v1/submissions/{id}/replay"),
    ("POST", "/v1/submissions/replay"),
]


@pytest.fixture
async def rotated_client(
    make_settings: Callable[..., Settings], sources: Sources, redis: Redis
) -> AsyncIterator[Client]:
    """The receiver with two admin tokens, the new one and the one being retired."""
    settings = make_settings(admin_token=SecretStr("old-token-1, new-token-2"))
    async with TestClient(TestServer(create_app(settings, sources, redis=redis))) as client:
        yield client


async def test_every_route_needs_one_of_the_tokens(rotated_client: Client) -> None:
    sub_id = await post(rotated_client, "ann@example.com")
    refused = [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic new-token-2"}]
    refused += [{"Authorization": "Bearer "}, {"Authorization": "Bearer new-token-2x"}]
    for method, route in ROUTES:
        url = route.format(id=sub_id)
        for headers in refused:
            response = await rotated_client.request(method, url, headers=headers, json={})
            await problem_of(response, 401, "unauthorized")
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
    for token in ("old-token-1", "new-token-2"):
        response = await rotated_client.get(
            f"/v1/submissions/{sub_id}", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status == 200
        assert (await response.json())["payload"]["contact"]["email"] == "ann@example.com"


async def test_without_a_configured_token_the_api_is_closed(
    make_settings: Callable[..., Settings], sources: Sources, redis: Redis
) -> None:
    settings = make_settings(admin_token=None)
    async with TestClient(TestServer(create_app(settings, sources, redis=redis))) as client:
        for headers in ({}, {"Authorization": "Bearer "}, ADMIN):
            await problem_of(await client.get("/v1/counts", headers=headers), 401, "unauthorized")


# -- listing ------------------------------------------------------------------------------------


async def test_list_is_newest_first_without_personal_data(client: Client, queue: Queue) -> None:
    first = await post(client, "ann@example.com")
    second = await post(client, "bo@example.com")
    await finish(queue, first, "created")
    body = await listing(client)
    assert ids_of(body) == [second, first]
    assert body["limit"] == 50 and body["more"] is False
    created = body["submissions"][1]
    assert created["state"] == "created" and created["attempts"] == 1
    assert created["lead_id"] == f"lead_{first[-6:]}"
    assert created["lead_url"] == f"https://app.close.com/lead/lead_{first[-6:]}/"
    text = json.dumps(body)
    assert "ann@example.com" not in text and "bo@example.com" not in text
    assert "payload" not in created and "history" not in created

    asked = await listing(client, "?include=payload&include=history")
    rows = {row["id"]: row for row in asked["submissions"]}
    assert rows[first]["payload"]["contact"]["email"] == "ann@example.com"
    assert [e["state"] for e in rows[first]["history"]] == ["queued", "created"]


async def test_list_filters_by_state_source_and_time(client: Client, queue: Queue) -> None:
    created = await post(client, "a@example.com")
    dead = await post(client, "b@example.com")
    form = await post(client, "c@example.com", source="website")
    await finish(queue, created, "created")
    await finish(queue, dead, "dead")
    assert ids_of(await listing(client, "?state=dead")) == [dead]
    assert ids_of(await listing(client, "?state=dead&state=created")) == [dead, created]
    assert ids_of(await listing(client, "?state=dead,created")) == [dead, created]
    assert ids_of(await listing(client, "?state=queued")) == [form]
    assert ids_of(await listing(client, "?source=website")) == [form]
    assert ids_of(await listing(client, "?source=partner&state=queued")) == []
    assert ids_of(await listing(client, "?source=nowhere")) == []

    record = await queue.records.get(dead)
    assert record is not None
    at = record.received_at
    # Unix seconds, ISO-8601 with Z, and an offset whose "+" arrived as a space (unencoded).
    assert ids_of(await listing(client, f"?since={at}")) == [form, dead]
    assert ids_of(await listing(client, f"?until={at}")) == [dead, created]
    later = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at + 3600 + 1))  # at + 1 s
    assert ids_of(await listing(client, f"?since={at}&until={later}%2B01:00")) == [form, dead]
    assert ids_of(await listing(client, f"?since={at}&until={later}+01:00")) == [form, dead]
    assert ids_of(await listing(client, "?since=2999-01-01T00:00:00Z")) == []


async def test_list_limit_says_when_there_is_more(client: Client) -> None:
    ids = [await post(client, f"p{n}@example.com") for n in range(3)]
    body = await listing(client, "?limit=2")
    assert ids_of(body) == ids[:0:-1] and body["more"] is True
    body = await listing(client, "?limit=3")
    assert ids_of(body) == ids[::-1] and body["more"] is False


@pytest.mark.parametrize(
    ("target", "parameter"),
    [
        ("/v1/submissions?state=bogus", "state"),
        ("/v1/submissions?state=dead,bogus", "state"),
        ("/v1/submissions?limit=0", "limit"),
        ("/v1/submissions?limit=501", "limit"),
        ("/v1/submissions?limit=ten", "limit"),
        ("/v1/submissions?since=yesterday", "since"),
        ("/v1/submissions?until=-5", "until"),
        ("/v1/submissions?since=1e400", "since"),
        ("/v1/submissions?since=2024-05-02T00:00:00Z&until=2024-05-01T00:00:00Z", "since"),
        ("/v1/submissions?include=secrets", "include"),
        ("/v1/submissions?source=", "source"),
        ("/v1/links?status=ignored", "status"),
        ("/v1/links?status=", "status"),
        ("/v1/links?status=flagged&status=merged", "status"),
        ("/v1/links?limit=0", "limit"),
        ("/v1/links?limit=501", "limit"),
        ("/v1/links?limit=ten", "limit"),
        ("/v1/links?before=yesterday", "before"),
        ("/v1/links?before=-1", "before"),
    ],
)
async def test_bad_parameters_are_named_in_a_400(
    client: Client, target: str, parameter: str
) -> None:
    response = await client.get(target, headers=ADMIN)
    body = await problem_of(response, 400, "invalid-parameter")
    assert body["invalid-params"][0]["name"] == parameter
    assert body["detail"].startswith(f"{parameter}: ")


# -- one submission, erasure --------------------------------------------------------------------


async def test_erase_leaves_a_tombstone_and_no_personal_data(
    client: Client, queue: Queue, redis: Redis, keys: Keys
) -> None:
    sub_id = await post(client, "erase.me@example.com")
    await finish(queue, sub_id, "dead")
    assert len(await redis.xrange(keys.dead)) == 1

    response = await client.delete(f"/v1/submissions/{sub_id}", headers=ADMIN)
    assert response.status == 200
    tombstone = await response.json()
    assert tombstone["id"] == sub_id and tombstone["source"] == "partner"
    assert tombstone["state"] == "erased" and tombstone["erased_from"] == "dead"
    assert "payload" not in tombstone and tombstone["lead_id"] is None
    assert [e["state"] for e in tombstone["history"]] == ["erased"]

    stored = await redis.hgetall(keys.sub(sub_id))
    assert "envelope" not in stored and "last_error" not in stored
    assert "erase.me" not in json.dumps(stored)
    assert await redis.xrange(keys.dead) == []  # no longer a dead letter

    got = await (await client.get(f"/v1/submissions/{sub_id}", headers=ADMIN)).json()
    assert got["state"] == "erased" and "payload" not in got
    listed = await listing(client, "?state=erased&include=payload&include=history")
    assert ids_of(listed) == [sub_id]
    assert "erase.me" not in json.dumps(listed)
    assert listed["submissions"][0]["erased_from"] == "dead"
    assert ids_of(await listing(client, "?state=dead")) == []

    again = await client.delete(f"/v1/submissions/{sub_id}", headers=ADMIN)
    assert again.status == 200 and (await again.json())["state"] == "erased"
    replay = await client.post(f"/v1/submissions/{sub_id}/replay", headers=ADMIN)
    await problem_of(replay, 409, "conflict")
    unknown = await client.delete("/v1/submissions/sub_nothing", headers=ADMIN)
    await problem_of(unknown, 404, "not-found")


async def test_get_shows_payload_history_and_the_close_link(client: Client, queue: Queue) -> None:
    sub_id = await post(client, "gil@example.com")
    await queue.steps.apply(
        Transition(
            sub_id,
            "created",
            lead_id="lead_x",
            progress=Progress(lead_url="https://close.test/l/x/"),
        )
    )
    record = await (await client.get(f"/v1/submissions/{sub_id}", headers=ADMIN)).json()
    assert record["payload"]["contact"]["email"] == "gil@example.com"
    assert record["lead_url"] == "https://close.test/l/x/"
    assert [e["state"] for e in record["history"]] == ["queued", "created"]


# -- replaying many -----------------------------------------------------------------------------


async def test_replay_many_by_ids_reports_each_outcome(
    client: Client, queue: Queue, redis: Redis, keys: Keys
) -> None:
    dead = await post(client, "d@example.com")
    busy = await post(client, "e@example.com")
    gone = await post(client, "f@example.com")
    await finish(queue, dead, "dead")
    await finish(queue, gone, "created")
    await queue.records.erase(gone)
    response = await client.post(
        "/v1/submissions/replay",
        json={"ids": [dead, busy, gone, "sub_nothing", dead]},
        headers=ADMIN,
    )
    assert response.status == 200
    body = await response.json()
    assert body["results"] == [
        {"id": dead, "outcome": "replayed"},
        {"id": busy, "outcome": "in-progress"},
        {"id": gone, "outcome": "erased"},
        {"id": "sub_nothing", "outcome": "unknown"},
    ]
    assert body["replayed"] == 1 and body["more"] is False
    record = await queue.records.get(dead)
    assert record is not None and record.state == "queued" and record.attempts == 0
    assert await redis.xrange(keys.dead) == []


async def test_replay_many_by_filter_takes_only_what_matches(client: Client, queue: Queue) -> None:
    old_dead = await post(client, "g@example.com")
    other_source = await post(client, "h@example.com", source="website")
    new_dead = await post(client, "i@example.com")
    created = await post(client, "j@example.com")
    for sub_id, state, source in (
        (old_dead, "dead", "partner"),
        (other_source, "dead", "website"),
        (new_dead, "dead", "partner"),
        (created, "created", "partner"),
    ):
        await finish(queue, sub_id, state, source)
    record = await queue.records.get(new_dead)
    assert record is not None

    body = {"state": "dead", "source": "partner", "since": record.received_at - 0.0005}
    response = await client.post("/v1/submissions/replay", json=body, headers=ADMIN)
    assert (await response.json())["results"] == [{"id": new_dead, "outcome": "replayed"}]

    response = await client.post(
        "/v1/submissions/replay", json={"state": "dead", "limit": 1}, headers=ADMIN
    )
    answer = await response.json()
    assert answer["results"] == [{"id": other_source, "outcome": "replayed"}]
    assert answer["more"] is True  # old_dead is still dead
    states = {i: (await queue.records.get(i)).state for i in (old_dead, created)}  # type: ignore[union-attr]
    assert states == {old_dead: "dead", created: "created"}


@pytest.mark.parametrize(
    ("body", "parameter"),
    [
        ([], "body"),
        ({}, "body"),
        ({"ids": ["a"], "state": "dead"}, "body"),
        ({"ids": []}, "ids"),
        ({"ids": "sub_1"}, "ids"),
        ({"ids": [1]}, "ids"),
        ({"state": "queued"}, "state"),
        ({"state": "dead", "since": "soon"}, "since"),
        ({"state": "dead", "until": 10**400}, "until"),
        ({"state": "dead", "until": 1714564800000}, "until"),  # milliseconds
        ({"state": "dead", "limit": 0}, "limit"),
        ({"state": "dead", "limit": True}, "limit"),
        ({"state": "dead", "everything": True}, "everything"),
    ],
)
async def test_replay_many_refuses_what_it_cannot_read(
    client: Client, body: Any, parameter: str
) -> None:
    response = await client.post("/v1/submissions/replay", json=body, headers=ADMIN)
    problem = await problem_of(response, 400, "invalid-parameter")
    assert problem["invalid-params"][0]["name"] == parameter


async def test_replay_many_needs_json(client: Client) -> None:
    for body in (b"ids=1", b"", b"[" * 100_000, b'{"ids": ["\xff"]}'):
        response = await client.post("/v1/submissions/replay", data=body, headers=ADMIN)
        await problem_of(response, 400, "malformed-body")


# -- counts, queue depth, delivery --------------------------------------------------------------


async def test_counts_show_states_queue_depth_and_delivery(
    client: Client, queue: Queue, redis: Redis, keys: Keys
) -> None:
    ids = [await post(client, f"k{n}@example.com") for n in range(5)]
    await queue.stream.read("tester", count=2, block_ms=10)  # two entries read by a worker
    await finish(queue, ids[2], "dead")
    await queue.steps.apply(
        Transition(ids[3], "retrying", retry_at=time.time() + 60, source="partner")
    )
    response = await client.get("/v1/counts", headers=ADMIN)
    assert response.status == 200
    body = await response.json()
    assert body["states"]["queued"] == 3 and body["states"]["dead"] == 1
    assert body["states"]["retrying"] == 1 and body["states"]["created"] == 0
    assert body["total"] == 5
    assert body["queue"] == {
        "stream_length": 5,  # the entries were not acknowledged (no worker finished them)
        "pending": 2,
        "retry_scheduled": 1,
        "dead_letters": 1,
    }
    assert body["delivery"] == {
        "status": "running",
        "paused_reason": None,
        "rate_limit_pauses": dict.fromkeys(GROUPS, 0.0),
    }

    await redis.set(keys.close("pause:search"), "429", px=5000)
    delivery = (await (await client.get("/v1/counts", headers=ADMIN)).json())["delivery"]
    assert delivery["status"] == "rate-limited"
    assert 0 < delivery["rate_limit_pauses"]["search"] <= 5

    await redis.set(keys.close("auth"), "Close refused the API key (401)")
    delivery = (await (await client.get("/v1/counts", headers=ADMIN)).json())["delivery"]
    assert delivery["status"] == "paused"
    assert delivery["paused_reason"] == "Close refused the API key (401)"


async def test_counts_before_any_worker_created_the_group(
    client: Client, redis: Redis, keys: Keys
) -> None:
    await post(client, "l@example.com")
    await redis.xgroup_destroy(keys.stream, GROUP)
    body = await (await client.get("/v1/counts", headers=ADMIN)).json()
    assert body["queue"]["stream_length"] == 1 and body["queue"]["pending"] == 0


async def test_redis_down_is_503(make_settings: Callable[..., Settings], sources: Sources) -> None:
    server = RedisServer()
    server.start()
    settings = make_settings(redis_url=server.url)
    try:
        async with TestClient(TestServer(create_app(settings, sources))) as client:
            sub_id = await post(client, "m@example.com")
            await client.post("/admin/login", data={"token": ADMIN_TOKEN})  # a session first
            server.stop(remove=False)
            for method, route in ROUTES:
                url = route.format(id=sub_id)
                body = {"ids": [sub_id]}
                response = await client.request(method, url, headers=ADMIN, json=body)
                await problem_of(response, 503, "queue-unavailable")
            # The dashboard says so on a page; logging in needs Redis too (the revocation list
            # and the throttle on wrong tokens live there).
            login = await client.post(
                "/admin/login", data={"token": ADMIN_TOKEN}, allow_redirects=False
            )
            assert login.status == 503 and "Set-Cookie" not in login.headers
            for page in ("/admin", "/admin/dead", "/admin/links", f"/admin/submissions/{sub_id}"):
                response = await client.get(page)
                assert response.status == 503 and response.content_type == "text/html"
                assert "Redis is unreachable" in await response.text()
    finally:
        server.stop()
