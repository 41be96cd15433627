"""The payload ``lead-intake map`` previews: a file (or standard input) read as the receiver
would read the request, into the :class:`~service.envelope.Envelope` a worker maps."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from service.envelope import Envelope, new_submission_id
from service.httpbody import BodyError
from service.receiver.bodies import media_type_of, parse_body


class BadPayload(Exception):
    """The payload cannot be read (the file, or its content for the content type given)."""


CONTENT_TYPE_SHORTHANDS = {
    "json": "application/json",
    "form": "application/x-www-form-urlencoded",
    "multipart": "multipart/form-data",
}


def read_lead_file(path: Path | None) -> dict[str, Any] | None:
    """A lead as ``GET /lead/{id}/`` gives it, from a JSON file (``map --lead-file``)."""
    if path is None:
        return None
    try:
        lead = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BadPayload(f"{path}: cannot read: {exc.strerror}") from None
    except ValueError as exc:
        raise BadPayload(f"{path}: not JSON: {exc}") from None
    if not isinstance(lead, dict) or not isinstance(lead.get("id"), str):
        raise BadPayload(f"{path}: not a Close lead (a JSON object with an id)")
    return lead


def preview_envelope(args: argparse.Namespace, source: str) -> Envelope:
    try:
        raw = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except OSError as exc:
        raise BadPayload(f"{args.file}: cannot read: {exc.strerror}") from None
    content_type = CONTENT_TYPE_SHORTHANDS.get(args.content_type, args.content_type)
    media_type, params = media_type_of(content_type)
    if media_type == "multipart/form-data" and "boundary" not in params:
        first = raw.lstrip().split(b"\r\n", 1)[0].split(b"\n", 1)[0]
        content_type = f"{content_type}; boundary={first.decode('latin-1')[2:]}"
    try:
        parsed = parse_body(content_type, raw)
    except BodyError as exc:
        raise BadPayload(f"{args.file}: not a {content_type} payload: {exc.detail}") from None
    headers = {}
    for header in args.header:
        name, _, value = header.partition(":")
        headers[name.strip().lower()] = value.strip()
    now = time.time()
    return Envelope(
        id=new_submission_id(now),
        source=source,
        received_at=now,
        content_type=parsed.media_type,
        body=parsed.body,
        headers=headers,
        query=dict(parse_qsl(args.query or "", keep_blank_values=True)),
        client_ip=args.client_ip,
    )


def add_map_arguments(mapping: argparse.ArgumentParser) -> None:
    """``lead-intake map``'s arguments: which mapping, the request, an existing lead."""
    which = mapping.add_mutually_exclusive_group(required=True)
    which.add_argument("--source", help="a source of the sources file")
    which.add_argument("--preset", help="a provider preset, without a source")
    mapping.add_argument(
        "--content-type",
        default="application/json",
        help="media type of FILE, or json | form | multipart (default json)",
    )
    mapping.add_argument("--query", help="query string of the request, e.g. 'utm_source=ads'")
    mapping.add_argument(
        "--header", action="append", default=[], help="a request header 'Name: value' (repeatable)"
    )
    mapping.add_argument("--client-ip", help="the client IP the request came from")
    existing = mapping.add_mutually_exclusive_group()
    existing.add_argument(
        "--lead", help="preview the follow-ups for a match to this Close lead (needs the API key)"
    )
    existing.add_argument(
        "--lead-file", type=Path, help="... or to this lead, as GET /lead/{id}/ gives it (JSON)"
    )
    mapping.add_argument("--fetched", help="the provider's answer for a thin payload (JSON)")
    mapping.add_argument("--item", type=int, default=0, help="which item of a split delivery")
    mapping.add_argument("file", help="the payload file, or - for standard input")
