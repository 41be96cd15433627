"""Traces: one submission's spans, from the door to each Close call, under one trace id.

Spans are collected with the SDK's in-memory exporter; the receiver and the worker run in-process
against the test Redis and the Close emulator.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from redis.asyncio import Redis

from service import tracing
from service.config.settings import Settings
from service.config.sources import Sources
from service.envelope import Envelope
from service.queue import Queue
from tests.conftest import emulator_state, running_worker, wait_for_record

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
PERSONAL = ("Ann Lee", "ann.lee@example.com", "4155550100", "415", "Acme")


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.install(TracerProvider(), SimpleSpanProcessor(exporter))
    try:
        yield exporter
    finally:
        tracing.shutdown()


def attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


async def test_one_submission_from_door_to_close_under_one_trace(
    spans: InMemorySpanExporter,
    client: TestClient[Any, Any],
    queue: Queue,
    settings: Settings,
    sources: Sources,
    redis: Redis,
    emulator: TestServer,
) -> None:
    # The first create fails (503): a second attempt, later, joins the same trace.
    emulator_state(emulator).add_fault(method="POST", path="/api/v1/lead/", status=503, count=1)
    response = await client.post(
        "/hooks/website",
        data="name=Ann+Lee&email=ann.lee%40example.com&phone=4155550100&company=Acme",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01",
        },
    )
    assert response.status == 202
    sub_id = (await response.json())["id"]
    async with running_worker(settings, sources, redis):
        await wait_for_record(queue, sub_id, within=15)
    everything = spans.get_finished_spans()
    finished = [s for s in everything if format(s.context.trace_id, "032x") == TRACE_ID]
    # Outside the sender's trace only the worker's own Close reads (custom fields, statuses),
    # each a trace of its own: no span of the submission.
    for other in (s for s in everything if s not in finished):
        assert other.kind == SpanKind.CLIENT and other.parent is None, other.name
        assert "GET" in other.name

    [door] = [s for s in finished if s.kind == SpanKind.SERVER]
    assert door.name == "POST /hooks/{source}"
    assert door.parent is not None and format(door.parent.span_id, "016x") == PARENT_ID
    assert attributes(door)[tracing.SUBMISSION_ID] == sub_id
    assert attributes(door)[tracing.SOURCE] == "website"
    assert attributes(door)["http.response.status_code"] == 202

    attempts = [s for s in finished if s.kind == SpanKind.CONSUMER]
    # The 503 left the create's outcome unknown: a retry, one waiting out Close's search index,
    # then the create.
    assert len(attempts) == 3, [s.name for s in attempts]
    for attempt in attempts:
        assert attempt.parent is not None and attempt.parent.span_id == door.context.span_id
        assert attributes(attempt)[tracing.SUBMISSION_ID] == sub_id
        assert attributes(attempt)[tracing.SOURCE] == "website"
    states = [attributes(a)[tracing.STATE] for a in sorted(attempts, key=lambda a: a.start_time)]
    assert states == ["retrying", "retrying", "created"]

    calls = [s for s in finished if s.kind == SpanKind.CLIENT]
    attempt_ids = {a.context.span_id for a in attempts}
    assert calls and all(c.parent is not None and c.parent.span_id in attempt_ids for c in calls)
    names = {c.name for c in calls}
    assert {"Close POST /lead/", "Close POST /data/search/", "Close POST /activity/note/"} <= names
    statuses = sorted(
        attributes(c)["http.response.status_code"] for c in calls if "lead/" in c.name
    )
    assert 503 in statuses and 200 in statuses

    # No personal data in any span name or attribute.
    text = json.dumps([(s.name, attributes(s)) for s in finished])
    for value in PERSONAL:
        assert value not in text, f"{value!r} is in a span"


async def test_off_unless_otel_variables_ask(client: TestClient[Any, Any], queue: Queue) -> None:
    assert tracing.setup("receiver", {}) is False
    assert tracing.setup("receiver", {"OTEL_TRACES_EXPORTER": "none"}) is False
    assert tracing.setup("worker", {"OTEL_SERVICE_NAME": "x", "OTEL_SDK_DISABLED": "true"}) is False
    assert not tracing.enabled()
    response = await client.post("/hooks/partner", json={"contact": {"email": "t@example.com"}})
    raw = await queue.records.envelope((await response.json())["id"])
    assert raw is not None
    assert Envelope.from_json(raw).trace == {}, "nothing carried while tracing is off"
    assert json.loads(raw)["trace"] == {}


def test_the_otel_variables_choose_the_exporter() -> None:
    assert tracing.exporter_named({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}) == "otlp"
    assert tracing.exporter_named({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c"}) == "otlp"
    assert tracing.exporter_named({"OTEL_TRACES_EXPORTER": "console"}) == "console"
    assert tracing.exporter_named({"OTEL_METRICS_EXPORTER": "otlp"}) is None
    try:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}
        assert tracing.setup("worker", env) is True
        assert tracing.enabled()
        resource = tracing._on.provider.resource.attributes
        assert resource["service.name"] == "lead-intake-worker"
    finally:
        tracing.shutdown()
    grpc = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    assert tracing.setup("worker", grpc) is False, "a protocol the extra does not ship: off"


def test_envelope_carries_the_context_through_json() -> None:
    envelope = Envelope(
        id="sub_1",
        source="website",
        received_at=1.0,
        content_type="application/json",
        body={},
        trace={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"},
    )
    assert Envelope.from_json(envelope.to_json()).trace == envelope.trace
