"""The payload ``lead-intake map`` previews: a file (or standard input) read as the receiver
would read the request, into the :class:`~service.envelope.Envelope` a worker maps."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
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
