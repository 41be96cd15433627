"""Limits for everyone: body size per source, JSON depth and keys, form fields, and slow
clients (headers and body) that would otherwise hold a connection of the receiver forever."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from service.config.settings import Settings
from service.keys import Keys
from service.receiver.bodies import BodyError, ParseLimits, parse_body
from tests.receiver.signers import FORM, JSON, problem_of, receiver

SOURCES: dict[str, Any] = {
    "small": {
        "kind": "webhook",
        "preset": "generic-json",
        "max_body_bytes": 300,
        "body_limits": {"json_depth": 4, "json_keys": 20, "form_fields": 5},
    }
}


def nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth - 1):
        value = {"a": value}
    return {"email": "a@example.com", "deep": value} if depth > 1 else value


@pytest.mark.parametrize(
    ("raw", "status", "fragment"),
    [
        (json.dumps({"a": {"b": {"c": [1]}}}), None, None),  # depth 4 is allowed
        (json.dumps({"a": {"b": {"c": [[1]]}}}), 400, "nested deeper than 4 levels"),
        (json.dumps({f"k{i}": i for i in range(21)}), 413, "more than 20 keys and items"),
        (json.dumps({"a": list(range(20))}), 413, "more than 20 keys and items"),
        ("[" * 5000 + "]" * 5000, 400, "nested"),
        # An integer past 64 bits sends the document to the standard library: same limits.
        (json.dumps({"id": 2**70, "a": {"b": {"c": [1]}}}), None, None),
        (json.dumps({"id": 2**70, "a": {"b": {"c": [[1]]}}}), 400, "nested deeper than 4"),
        (json.dumps({"id": 2**70, "a": list(range(20))}), 413, "more than 20 keys and items"),
    ],
)
def test_json_depth_and_keys_are_bounded(raw: str, status: int | None, fragment: str) -> None:
    limits = ParseLimits(json_depth=4, json_keys=20)
    if status is None:
        assert parse_body("application/json", raw.encode(), limits).body == json.loads(raw)
        return
    with pytest.raises(BodyError) as info:
        parse_body("application/json", raw.encode(), limits)
    assert info.value.status == status and fragment in info.value.detail


def test_form_fields_are_bounded() -> None:
    limits = ParseLimits(form_fields=3)
    assert parse_body(FORM["Content-Type"], b"a=1&b=2&c=3", limits).body == {
        "a": "1",
        "b": "2",
        "c": "3",
    }
    with pytest.raises(BodyError) as info:
        parse_body(FORM["Content-Type"], b"a=1&b=2&c=3&d=4", limits)
    assert info.value.status == 413 and "more than 3 fields" in info.value.detail
    parts = b"".join(
        b'--B\r\nContent-Disposition: form-data; name="f%d"\r\n\r\nv\r\n' % i for i in range(4)
    )
    with pytest.raises(BodyError) as info:
        parse_body("multipart/form-data; boundary=B", parts + b"--B--\r\n", limits)
    assert info.value.status == 413


async def test_each_limit_has_its_own_clear_4xx_at_the_door(
    settings: Settings, redis: Redis, keys: Keys
) -> None:
    async with receiver(settings, redis, SOURCES) as client:
        cases = [
            ({"email": "a@example.com", "pad": "x" * 400}, 413, "too-large", "at most 300 bytes"),
            (nested(6), 400, "malformed-body", "nested deeper than 4"),
            ({f"k{i}": 1 for i in range(21)}, 413, "too-large", "more than 20 keys"),
        ]
        for payload, status, slug, fragment in cases:
            response = await client.post("/hooks/small", data=json.dumps(payload), headers=JSON)
            assert fragment in (await problem_of(response, status, slug))["detail"]
        form = await client.post("/hooks/small", data="a=1&b=2&c=3&d=4&e=5&f=6", headers=FORM)
        assert "more than 5 fields" in (await problem_of(form, 413, "too-large"))["detail"]
    assert await redis.xlen(keys.stream) == 0


async def _raw_exchange(client: TestClient[Any, Any], request: bytes, wait: float) -> bytes:
    """Send ``request`` as is; the answer (head and body), or b"" when the server hung up."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(request)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), wait)
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        return head + await asyncio.wait_for(reader.readexactly(length), wait)
    except (ConnectionResetError, asyncio.IncompleteReadError):
        return b""
    finally:
        writer.close()


@pytest.mark.parametrize("over_limit", [False, True])
async def test_a_body_that_never_finishes_gets_408(
    over_limit: bool, make_settings: Any, redis: Redis, keys: Keys
) -> None:
    settings = make_settings(read_timeout_seconds=0.3)
    sources = {"small": {**SOURCES["small"], "rate_limit": {"per_source": "1/hour"}}}
    async with receiver(settings, redis, sources if over_limit else SOURCES) as client:
        if over_limit:
            assert (await client.post("/hooks/small", json={"email": "a@x.com"})).status == 202
        head = (
            b"POST /hooks/small HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n"
        )
        answer = await _raw_exchange(client, head + b'{"email": "a@exa', wait=10)
    status_line, _, rest = answer.partition(b"\r\n")
    if over_limit:  # the limit answers first, as always; the unread body closes the connection
        assert status_line == b"HTTP/1.1 429 Too Many Requests"
        assert b"urn:lead-intake:problem:rate-limited" in rest
    else:
        assert status_line == b"HTTP/1.1 408 Request Timeout"
        assert b"urn:lead-intake:problem:request-timeout" in rest
    assert b"Connection: close" in rest
    assert await redis.xlen(keys.stream) == (1 if over_limit else 0)


async def test_headers_that_never_finish_close_the_connection(
    make_settings: Any, redis: Redis
) -> None:
    settings = make_settings(header_timeout_seconds=0.3)
    async with receiver(settings, redis, SOURCES) as client:
        # The request line and one header, then nothing: the receiver hangs up by itself.
        answer = await _raw_exchange(client, b"POST /hooks/small HTTP/1.1\r\nHost: t\r\n", wait=10)
    assert answer == b""
