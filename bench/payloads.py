"""What the benchmarks send: distinct people, ~1 KB signed webhooks, form posts, request files.

Every submission is a different person (email and phone derived from a run tag and an index),
so neither delivery idempotency nor identity dedup turns load into duplicates. Webhooks are
signed with Standard Webhooks (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``)
by this module's own HMAC code, independent of the receiver's verifier.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import zlib
from pathlib import Path
from urllib.parse import urlencode

WEBHOOK_SOURCE = "partner"
FORM_SOURCE = "website"
SECRET_ENV = "BENCH_WEBHOOK_SECRET"

# Valid North American area codes: phones normalise to distinct, valid E.164 numbers.
_AREAS = (
    201, 202, 203, 205, 206, 207, 208, 210, 212, 213, 214, 215, 216, 217, 218, 219,
    224, 225, 228, 229, 231, 234, 239, 240, 248, 251, 252, 253, 254, 256, 260, 262,
    267, 269, 270, 276, 281, 301, 302, 303, 304, 305, 307, 308, 309, 310, 312, 313,
    314, 315, 316, 317, 318, 319, 320, 321, 323, 330, 334, 336, 337, 339, 347, 351,
)  # fmt: skip
_PHONES = len(_AREAS) * 800 * 10_000
_FILLER = (
    "We are evaluating vendors for the next quarter and would like a call about pricing, "
    "onboarding and the integration with our existing CRM. Our team is distributed across "
    "three offices; please include the options for regional support and data residency. "
)


def new_secret() -> str:
    """A fresh Standard Webhooks signing secret (``whsec_`` + base64 of 24 random bytes)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def person(tag: str, index: int) -> dict[str, str]:
    """A distinct person for ``index`` within the run ``tag`` (and, but for a rare phone
    collision, across runs: the phone number space starts at a point drawn from the tag)."""
    number = (zlib.crc32(tag.encode()) * 7919 + index) % _PHONES
    area = _AREAS[number // 8_000_000]
    exchange = 200 + (number // 10_000) % 800
    return {
        "given": f"Bench{index}",
        "family": f"Person-{tag}",
        "email": f"bench.{tag}.{index}@example.com",
        "phone": f"+1{area}{exchange}{number % 10_000:04d}",
        "company": f"Bench Co {tag}-{index}",
    }


def webhook_body(tag: str, index: int) -> bytes:
    """A partner's JSON webhook of about 1 KB."""
    p = person(tag, index)
    doc = {
        "type": "lead.created",
        "reference": f"ref-{tag}-{index}",
        "customer": {
            "company_name": p["company"],
            "web": "https://www.example.com",
            "contact": {
                "given_name": p["given"],
                "family_name": p["family"],
                "email": p["email"],
                "mobile": p["phone"],
                "job_title": "Head of Operations",
            },
            "address": {"street": "1 Market St", "city": "San Francisco", "country": "US"},
        },
        "request": {"comment": ""},
        "meta": {"campaign": "spring-launch", "channel": "partner-portal", "score": 72},
    }
    base = len(json.dumps(doc, separators=(",", ":")))
    doc["request"]["comment"] = (_FILLER * 4)[: max(0, 1024 - base)]
    return json.dumps(doc, separators=(",", ":")).encode()


def form_body(tag: str, index: int) -> bytes:
    """A website contact form post (form-encoded), with the honeypot left empty."""
    p = person(tag, index)
    return urlencode(
        {
            "name": f"{p['given']} {p['family']}",
            "email": p["email"],
            "phone": p["phone"],
            "company": p["company"],
            "message": _FILLER[:300],
            "utm_source": "bench",
            "fax": "",
        }
    ).encode()


def _secret_key(secret: str) -> bytes:
    text = secret.removeprefix("whsec_")
    return base64.b64decode(text + "=" * (-len(text) % 4))


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value (``v1,<base64 HMAC-SHA256>``)."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(secret: str, tag: str, index: int, body: bytes, now: int) -> dict[str, str]:
    msg_id = f"msg_{tag}_{index}"
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(now),
        "webhook-signature": sign(secret, msg_id, now, body),
    }


def raw_request(host: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def write_request_file(
    path: Path,
    *,
    kind: str,
    count: int,
    tag: str,
    host: str,
    secret: str,
    start: int = 0,
) -> int:
    """Write ``count`` distinct requests for wrk's replay.lua; returns the mean body size.

    ``kind`` is ``json`` (signed webhook to the partner source) or ``form`` (the website
    form). Webhook timestamps are now: the file must be replayed within the receiver's
    tolerance window (300 s), which every bench run is.
    """
    now = int(time.time())
    total = 0
    with path.open("wb") as out:
        for index in range(start, start + count):
            if kind == "json":
                body = webhook_body(tag, index)
                headers = {"Content-Type": "application/json"}
                headers |= signed_headers(secret, tag, index, body, now)
                target = f"/hooks/{WEBHOOK_SOURCE}"
            else:
                body = form_body(tag, index)
                headers = {
                    "Content-Type": "application/x-www-form-urlencoded",
                    "Accept": "application/json",
                }
                target = f"/hooks/{FORM_SOURCE}"
            raw = raw_request(host, target, headers, body)
            out.write(f"{len(raw)}\n".encode() + raw)
            total += len(body)
    return total // max(1, count)
