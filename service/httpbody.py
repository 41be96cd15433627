"""Request bodies as every route reads them: bounded in size and time, ``Content-Encoding``
decoded here, and text read in its declared charset.

aiohttp's own decompression is turned off (``auto_decompress=False`` in the receiver's handler
arguments): a body that claims gzip and is not would escape from its parser as a 500, and a
small compressed body could inflate past every size limit. Here the decoded size counts
against the limit (413), a body that does not decode is a 400, and an encoding other than
``gzip``, ``deflate`` or ``identity`` is a 415.

Charsets, the same for every body that is text (JSON, form fields, the admin API's JSON): the
declared ``charset`` (UTF-8 when there is none) must fit the bytes, else 400; a charset Python
does not know is a 415; a UTF-8 byte order mark at the start is skipped.

Every error is a :class:`BodyError`: its status, problem type (``slug``) and detail say how
to answer.
"""

from __future__ import annotations

import asyncio
import codecs
import zlib
from collections.abc import Sequence
from functools import lru_cache

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

BOM = codecs.BOM_UTF8
MAX_ENCODINGS = 2
"""Content codings one body may stack (``gzip, gzip`` is legal and pointless)."""

CLIENT_ERRORS: tuple[type[Exception], ...] = (HttpProcessingError, RequestPayloadError)
"""What aiohttp raises when the client sent a broken request or body (never a server fault)."""


class BodyError(ValueError):
    """The body cannot be read or does not parse; ``status`` and ``slug`` say how to answer."""

    def __init__(self, status: int, slug: str, detail: str) -> None:
        self.status = status
        self.slug = slug
        self.detail = detail
        super().__init__(detail)


def too_large(limit: int) -> BodyError:
    return BodyError(413, "too-large", f"the body may be at most {limit} bytes")


async def read_body(request: web.BaseRequest, limit: int, within: float) -> bytes:
    """The decoded body: 413 past ``limit`` bytes (sent or decoded, without reading the rest),
    408 when it does not arrive within ``within`` seconds, 400 when the bytes or their
    ``Content-Encoding`` are broken, 415 for an encoding this service does not decode."""
    encodings = request.headers.getall("Content-Encoding", ())
    codings = _codings(encodings) if encodings else ()
    if request.content_length is not None and request.content_length > limit:
        raise too_large(limit)
    try:
        raw = await _read(request, limit, within)
    except CLIENT_ERRORS as exc:
        raise BodyError(
            400, "malformed-body", f"the body could not be read: {_reason(exc)}"
        ) from None
    for coding in reversed(codings):
        raw = _decompress(raw, coding, limit)
    return raw


async def _read(request: web.BaseRequest, limit: int, within: float) -> bytes:
    content = request.content
    if content.is_eof():
        # The whole body came with the headers (a small post): nothing left to wait for, so
        # it is taken as it is (``read`` would come back for more, and find the end).
        raw = content.read_nowait()
        if len(raw) > limit:
            raise too_large(limit)
        return raw
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(within):
            async for chunk in content.iter_chunked(64 * 1024):
                size += len(chunk)
                if size > limit:
                    raise too_large(limit)
                chunks.append(chunk)
    except TimeoutError:
        raise BodyError(
            408, "request-timeout", f"the body did not arrive within {within:g} seconds"
        ) from None
    return b"".join(chunks)


def _reason(exc: Exception) -> str:
    message = getattr(exc, "message", None) or str(exc)
    return " ".join(str(message).split())[:200] or type(exc).__name__


def _codings(values: Sequence[str]) -> Sequence[str]:
    codings = [c.strip().lower() for value in values for c in value.split(",") if c.strip()]
    codings = [c for c in codings if c != "identity"]
    if len(codings) > MAX_ENCODINGS:
        raise BodyError(400, "malformed-body", f"more than {MAX_ENCODINGS} content codings")
    for coding in codings:
        if coding not in _WBITS:
            raise BodyError(
                415,
                "unsupported-media-type",
                f"content encoding {coding[:40]!r} is not accepted; send gzip, deflate or none",
            )
    return codings


# zlib's window bits: gzip framing; zlib framing (what "deflate" means in HTTP); raw deflate,
# which some clients send as "deflate" anyway.
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def _decompress(raw: bytes, coding: str, limit: int) -> bytes:
    wbits = _WBITS[coding]
    try:
        return _inflate(raw, wbits, limit)
    except zlib.error:
        if coding == "deflate":
            try:
                return _inflate(raw, -zlib.MAX_WBITS, limit)
            except zlib.error:
                pass
    raise BodyError(400, "malformed-body", f"the body is not valid {coding} data")


def _inflate(raw: bytes, wbits: int, limit: int) -> bytes:
    """Every member (gzip allows several in a row), never more than ``limit`` bytes out: a
    small body that would inflate to gigabytes stops at the limit."""
    out = b""
    rest = raw
    while True:
        inflater = zlib.decompressobj(wbits)
        out += inflater.decompress(rest, limit + 1 - len(out))
        if len(out) > limit:
            raise too_large(limit)
        if not inflater.eof:
            raise zlib.error("truncated")
        rest = inflater.unused_data
        if not rest:
            return out


# -- text ---------------------------------------------------------------------------------------


@lru_cache(maxsize=64)
def codec_name(charset: str | None) -> str:
    """The codec a declared charset names (``utf-8`` when none); 415 when Python has none."""
    if not charset:
        return "utf-8"
    try:
        return codecs.lookup(charset.strip().strip('"')).name
    except (LookupError, ValueError):
        raise BodyError(
            415, "unsupported-media-type", f"charset {charset[:40]!r} is not known; send UTF-8"
        ) from None


def is_utf8(charset: str | None) -> bool:
    return codec_name(charset) == "utf-8"


def without_bom(raw: bytes) -> bytes:
    """UTF-8 bytes without a leading byte order mark."""
    return raw[len(BOM) :] if raw.startswith(BOM) else raw


def decode_text(raw: bytes, charset: str | None, what: str) -> str:
    """``raw`` read in its declared charset (UTF-8 when none; a UTF-8 byte order mark skipped);
    400 when the bytes do not fit it, 415 for an unknown charset."""
    name = codec_name(charset)
    try:
        text = (without_bom(raw) if name == "utf-8" else raw).decode(name)
    except UnicodeDecodeError as exc:
        label = "UTF-8" if name == "utf-8" else repr((charset or "")[:40])
        raise BodyError(
            400, "malformed-body", f"{what} is not valid {label} (byte {exc.start})"
        ) from None
    return text.removeprefix("\ufeff")
