"""The OpenAPI document: served, in step with the routes, and true of the running API.

schemathesis generates requests from the document (valid and invalid ones) and checks each
answer: no 5xx, a status the document lists for the operation, the content type it names and a
body matching its schema. The receiver runs on a real port in its own thread (schemathesis
calls it synchronously), over a Redis holding submissions in every state, one of them under
the id the document uses as its example, so the example phase meets a real record.
"""

from __future__ import annotations

import asyncio
import copy
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import hypothesis
import pytest
import schemathesis
from aiohttp import web
from aiohttp.test_utils import TestClient
from pydantic import SecretStr
from redis.asyncio import Redis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.admin.openapi import SUBMISSION_ID, document
from service.config.settings import Settings
from service.config.sources import Sources
from service.dev.redis_server import RedisServer
from service.envelope import Envelope
from service.keys import Keys
from service.queue import Progress, Queue, Transition
from service.receiver.app import create_app
from tests.conftest import ADMIN_TOKEN

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
METHODS = {"get", "post", "put", "patch", "delete"}

schema = schemathesis.openapi.from_dict(copy.deepcopy(document()))


async def test_document_is_served_without_a_token(client: TestClient[Any, Any]) -> None:
    response = await client.get("/openapi.json")
    assert response.status == 200 and response.content_type == "application/json"
    served = await response.json()
    assert served == document()
    assert served["openapi"].startswith("3.1")
    assert served["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_document_is_valid_openapi_3_1() -> None:
    schema.validate()  # against the OpenAPI 3.1 meta-schema; raises what is wrong


def documented() -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in document()["paths"].items()
        for method in item
        if method in METHODS
    }


def registered(app: web.Application) -> set[tuple[str, str]]:
    return {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }


def test_every_v1_route_is_documented_and_nothing_else(
    settings: Settings, sources: Sources
) -> None:
    routes = registered(create_app(settings, sources))
    admin_routes = {(m, p) for m, p in routes if p.startswith("/v1/")}
    assert {(m, p) for m, p in documented() if p.startswith("/v1/")} == admin_routes
    assert documented() - routes == set()  # /openapi.json included
    assert len(admin_routes) == 7


def test_every_operation_documents_auth_and_problem_answers() -> None:
    for path, item in document()["paths"].items():
        for method, operation in item.items():
            if method not in METHODS:
                continue
            responses = operation["responses"]
            if path == "/openapi.json":
                assert operation["security"] == []
                continue
            assert {"401", "503"} <= responses.keys(), (method, path)
            for status, answer in responses.items():
                if status.startswith(("4", "5")):
                    assert "application/problem+json" in answer["content"], (method, path)


# -- schemathesis against the running receiver --------------------------------------------------

EXAMPLE_ID: str = SUBMISSION_ID["example"]


async def seed(queue: Queue) -> None:
    """A submission in each state, the document's example id among them (a dead one)."""
    now = time.time()
    for n, state in enumerate(("dead", "created", "retrying", "queued", "rejected", "erased")):
        sub_id = EXAMPLE_ID if n == 0 else f"sub_seed{n}"
        body = {"contact": {"name": f"Person {n}", "email": f"p{n}@example.com"}}
        await queue.intake.enqueue(
            Envelope(sub_id, "partner", now - 60 + n, "application/json", body)
        )
        if state == "created":
            await queue.steps.apply(Transition(sub_id, state, lead_id="lead_1", source="partner"))
        elif state == "retrying":
            error = {"error": "Close answered 503", "status": 503}
            await queue.steps.apply(
                Transition(
                    sub_id,
                    state,
                    retry_at=now + 60,
                    last_error=error,
                    progress=Progress(next_attempt_at=now + 60),
                )
            )
        elif state == "erased":
            await queue.records.erase(sub_id)
        elif state != "queued":
            error = {"error": "Close refused the lead", "status": 400}
            await queue.steps.apply(
                Transition(sub_id, state, last_error=error, dead=state == "dead")
            )
    # Identity links, one of each status, so the listing answers real rows.
    link = {"leads": ["lead_1", "lead_2"], "via": "search", "submission": "sub_seed1"}
    link["identities"] = {"e:" + "0" * 32: "lead_1", "p:" + "1" * 32: "lead_2"}
    await queue.links.record(link, "flagged", policy="flag", source="partner")
    merged = {**link, "leads": ["lead_3", "lead_4"]}
    await queue.links.record(merged, "merged", policy="merge", kept="lead_3", merged="lead_4")


@contextmanager
def receiver_in_a_thread(settings: Settings, sources: Sources) -> Iterator[str]:
    """The receiver on a free local port, served by its own event loop in another thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="receiver", daemon=True)
    thread.start()

    async def start() -> tuple[web.AppRunner, int]:
        redis: Redis = Redis.from_url(settings.redis_url or "", decode_responses=True)
        queue = Queue(redis, Keys(settings.key_prefix), record_ttl=settings.record_ttl_seconds)
        await queue.stream.ensure_group()
        await seed(queue)
        await redis.aclose()
        runner = web.AppRunner(create_app(settings, sources))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return runner, runner.addresses[0][1]

    try:
        runner, port = asyncio.run_coroutine_threadsafe(start(), loop).result(20)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(20)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture
def base_url(redis_server: RedisServer, sources: Sources) -> Iterator[str]:
    settings = Settings(
        env="dev",
        redis_url=redis_server.url,
        key_prefix=f"t{uuid.uuid4().hex[:12]}",
        admin_token=SecretStr(ADMIN_TOKEN),
    )
    with receiver_in_a_thread(settings, sources) as url:
        yield url


@pytest.mark.timeout(60)
@schema.parametrize()
@hypothesis.settings(
    max_examples=40,
    deadline=None,
    database=None,  # nothing written into the work tree
    derandomize=True,  # the same requests every run: a failure can be reproduced
    suppress_health_check=list(hypothesis.HealthCheck),
)
def test_the_api_does_what_its_document_says(case: schemathesis.Case, base_url: str) -> None:
    case.call_and_validate(
        base_url=base_url,
        headers=ADMIN,
        timeout=10,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
