"""Bodies as sent on the wire: ``Content-Encoding`` (decoded by the service, bounded), charsets
and byte order marks, the same on the door and the admin routes; and malformed HTTP, which
is one quiet WARNING line, never an ERROR with a traceback."""

from __future__ import annotations

import asyncio
import gzip
import json
import uuid
import zlib
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from service.config.settings import Settings
from service.logs import AccessLogger
from service.queue import Queue
from service.receiver.app import create_app
from service.receiver.state import QUEUE
from tests.conftest import ADMIN_TOKEN, sources_from
from tests.receiver.test_hooks import problem_of
from tests.reliability.logcapture import CapturedLogs, captured_logs

__all__ = ["captured_logs"]

pytestmark = pytest.mark.usefixtures("captured_logs")

SIGNED = {
    "kind": "webhook",
    "preset": "generic-json",
    "auth": {"scheme": "standard-webhooks", "secrets": ["env:ENC_WHSEC"]},
}
SOURCES = {"open": {"kind": "webhook", "preset": "generic-json"}, "signed": SIGNED}
BODY = {"email": "enc@example.com", "name": "Zoë Ünal"}
JSON = {"Content-Type": "application/json"}
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
async def door(
    make_settings: Callable[..., Settings], redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> Any:
    monkeypatch.setenv("ENC_WHSEC", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    settings = make_settings(max_body_bytes=64 * 1024)
    app = create_app(settings, sources_from({"sources": SOURCES}), redis=redis)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server(access_log_class=AccessLogger)
    async with TestClient(server) as client:
        yield client


def fresh() -> dict[str, str]:
    """A delivery of its own (the same body twice would be answered as a duplicate)."""
    return {"Idempotency-Key": uuid.uuid4().hex}


async def stored_body(door: TestClient[Any, Any], response: Any, redis: Redis) -> Any:
    assert response.status == 202, await response.text()
    sub_id = (await response.json())["id"]
    queue = Queue(redis, door.app[QUEUE].keys, record_ttl=60)
    record = await queue.records.get(sub_id)
    assert record is not None
    return record.payload()


@pytest.mark.parametrize(
    ("encoding", "pack"),
    [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("deflate", zlib.compress),  # zlib framing, as HTTP means it
        ("deflate", lambda raw: zlib.compress(raw, wbits=-zlib.MAX_WBITS)),  # raw, as some send
        ("gzip, gzip", lambda raw: gzip.compress(gzip.compress(raw))),
        ("identity", lambda raw: raw),
    ],
)
async def test_a_compressed_body_is_decoded_and_stored(
    door: TestClient[Any, Any], redis: Redis, encoding: str, pack: Callable[[bytes], bytes]
) -> None:
    raw = json.dumps(BODY).encode()
    response = await door.post(
        "/hooks/open", data=pack(raw), headers={**JSON, "Content-Encoding": encoding}
    )
    assert await stored_body(door, response, redis) == BODY


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/hooks/open", JSON),
        ("/hooks/signed", JSON),  # before the signature is looked at: the body is unreadable
        ("/v1/submissions/replay", {**JSON, **ADMIN}),
        ("/admin/login", {"Content-Type": "application/x-www-form-urlencoded"}),
    ],
)
@pytest.mark.parametrize(
    ("encoding", "data"),
    [
        ("gzip", b"this is not gzip"),
        ("gzip", gzip.compress(b'{"email": "cut@example.com"}')[:-9]),  # cut short
        ("deflate", b"\x00\x01 nor deflate"),
        ("gzip", zlib.compress(b"{}")),  # deflate data called gzip
    ],
)
async def test_a_body_that_does_not_decode_is_a_400_problem_everywhere(
    door: TestClient[Any, Any],
    captured_logs: CapturedLogs,
    path: str,
    headers: dict[str, str],
    encoding: str,
    data: bytes,
) -> None:
    response = await door.post(path, data=data, headers={**headers, "Content-Encoding": encoding})
    body = await problem_of(response, 400, "malformed-body")
    assert encoding in body["detail"]
    assert "Traceback" not in captured_logs.text
    assert '"level": "error"' not in captured_logs.text


async def test_encodings_the_service_does_not_decode_are_a_415(door: TestClient[Any, Any]) -> None:
    for encoding in ("br", "zstd", "compress", "gzip, br"):
        response = await door.post(
            "/hooks/open", data=b"{}", headers={**JSON, "Content-Encoding": encoding}
        )
        await problem_of(response, 415, "unsupported-media-type")


async def test_a_small_body_that_inflates_past_the_limit_is_a_413(
    door: TestClient[Any, Any],
) -> None:
    bomb = gzip.compress(b'{"a": "' + b"0" * (10 * 1024 * 1024) + b'"}')
    assert len(bomb) < 64 * 1024  # it passes the size check as sent
    response = await door.post(
        "/hooks/open", data=bomb, headers={**JSON, "Content-Encoding": "gzip"}
    )
    await problem_of(response, 413, "too-large")


async def test_a_byte_order_mark_on_json_is_accepted(
    door: TestClient[Any, Any], redis: Redis
) -> None:
    raw = b"\xef\xbb\xbf" + json.dumps(BODY).encode()
    for content_type in ("application/json", "application/json; charset=utf-8"):
        response = await door.post(
            "/hooks/open", data=raw, headers={"Content-Type": content_type, **fresh()}
        )
        assert await stored_body(door, response, redis) == BODY
    replay = await door.post(
        "/v1/submissions/replay",
        data=b'\xef\xbb\xbf{"ids": ["sub_nope"]}',
        headers={**JSON, **ADMIN},
    )
    assert replay.status == 200, await replay.text()
    assert (await replay.json())["results"] == [{"id": "sub_nope", "outcome": "unknown"}]


async def test_a_declared_charset_must_fit_the_body(
    door: TestClient[Any, Any], redis: Redis
) -> None:
    utf8 = json.dumps(BODY, ensure_ascii=False).encode()  # 'Zoë Ünal' as UTF-8
    odd = utf8 if len(utf8) % 2 else utf8 + b" "
    for path, headers in (("/hooks/open", {}), ("/v1/submissions/replay", ADMIN)):
        # UTF-8 bytes declared as UTF-16: they do not decode (odd length), refused.
        response = await door.post(
            path,
            data=odd,
            headers={**headers, "Content-Type": "application/json; charset=utf-16"},
        )
        await problem_of(response, 400, "malformed-body")
        # A charset nobody knows.
        response = await door.post(
            path, data=utf8, headers={**headers, "Content-Type": "application/json; charset=nope"}
        )
        await problem_of(response, 415, "unsupported-media-type")
        # Bytes that are not the declared ASCII.
        response = await door.post(
            path,
            data=utf8,
            headers={**headers, "Content-Type": "application/json; charset=us-ascii"},
        )
        await problem_of(response, 400, "malformed-body")
    # A body that is in the charset it declares is read in it.
    for charset in ("utf-16", "iso-8859-1"):
        response = await door.post(
            "/hooks/open",
            data=json.dumps(BODY, ensure_ascii=False).encode(charset),
            headers={"Content-Type": f"application/json; charset={charset}", **fresh()},
        )
        assert await stored_body(door, response, redis) == BODY
    form = b"email=enc%40example.com&name=Zo%EB"
    response = await door.post(
        "/hooks/open",
        data=form,
        headers={
            "Content-Type": "application/x-www-form-urlencoded; charset=iso-8859-1",
            **fresh(),
        },
    )
    assert await stored_body(door, response, redis) == {"email": "enc@example.com", "name": "Zoë"}


async def test_malformed_http_is_one_warning_line_without_a_traceback(
    door: TestClient[Any, Any], captured_logs: CapturedLogs
) -> None:
    async def send(request: bytes) -> None:
        reader, writer = await asyncio.open_connection(door.host, door.port)
        try:
            writer.write(request)
            await writer.drain()
            await asyncio.wait_for(reader.read(), 5)
        except (ConnectionResetError, TimeoutError):
            pass
        finally:
            writer.close()

    bad = [
        b"POST /hooks/open HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        b"POST /hooks/open HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nX-\x01: 1\r\n\r\n",
    ]
    for n in range(30):
        await send(bad[n % len(bad)])
    lines = [json.loads(line) for line in captured_logs.text.splitlines()]
    malformed = [line for line in lines if "malformed HTTP request" in line["message"]]
    assert malformed, captured_logs.text[:2000]
    assert {line["level"] for line in malformed} == {"warning"}
    assert len(malformed) <= 10  # rate-limited: at most 10 a minute
    assert not [line for line in lines if line["level"] in ("error", "critical")]
    assert "Traceback" not in captured_logs.text
    assert (await door.get("/healthz")).status == 200
