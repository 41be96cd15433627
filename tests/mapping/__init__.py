"""Tests of the mapping engine; helpers shared by its test modules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from service.envelope import Envelope

PAYLOADS = Path(__file__).parent / "payloads"
RECEIVED_AT = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC


def form_body(text: str) -> dict[str, str | list[str]]:
    """A urlencoded body parsed the way the receiver does: a repeated field becomes a list."""
    parsed = parse_qs(text.strip(), keep_blank_values=True)
    return {key: values[0] if len(values) == 1 else values for key, values in parsed.items()}


def payload(name: str) -> Any:
    """A stored example payload: ``<name>.json`` parsed, or ``<name>.txt`` as a form body."""
    path = PAYLOADS / f"{name}.json"
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8"))
    return form_body((PAYLOADS / f"{name}.txt").read_text(encoding="utf-8"))


def envelope(
    body: Any,
    *,
    source: str = "website",
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    content_type: str = "application/json",
    submission_id: str = "sub_01TEST",
) -> Envelope:
    return Envelope(
        id=submission_id,
        source=source,
        received_at=RECEIVED_AT,
        content_type=content_type,
        body=body,
        headers=headers or {},
        query=query or {},
        client_ip="203.0.113.7",
    )
