"""Request bodies → Python values. Used by the receiver and by ``lead-intake map``.

Text is read in its declared charset, UTF-8 when there is none, a UTF-8 byte order mark
skipped; bytes that do not fit the charset are refused (400), as is a charset Python does not
know (415) (``service/httpbody.py``, shared with the admin routes). Form bodies become
``dict[str, str | list[str]]`` (a repeated field becomes a list); multipart keeps its fields
and drops file parts (their names are listed under ``_files_dropped``) or refuses them.
:class:`ParseLimits` bounds what a body may hold besides its size: JSON nesting depth, JSON
keys and items, form fields.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP
from functools import lru_cache
from typing import Any, Literal
from urllib.parse import unquote

from service import jsoncodec
from service.httpbody import BodyError, codec_name, decode_text, without_bom

JSON_TYPES = ("application/json",)
FORM_TYPE = "application/x-www-form-urlencoded"
MULTIPART_TYPE = "multipart/form-data"
MAX_FORM_FIELDS = 1000


@dataclass(frozen=True, slots=True)
class ParseLimits:
    """What a body may hold besides its size (a source's ``body_limits`` and ``files``)."""

    json_depth: int = 32
    json_keys: int = 10000
    form_fields: int = MAX_FORM_FIELDS
    files: Literal["drop", "refuse"] = "drop"


DEFAULT_LIMITS = ParseLimits()


@dataclass(slots=True)
class ParsedBody:
    """A parsed body (made per request and read only: not frozen, a cheaper ``__init__``)."""

    media_type: str
    body: Any


def media_type_of(content_type: str | None) -> tuple[str, dict[str, str]]:
    """Split a Content-Type header into a lower-case media type and its parameters."""
    if not content_type:
        return "", {}
    media_type, params = _parse_content_type(content_type[:1024])
    return media_type, dict(params)


@lru_cache(maxsize=512)
def _parse_content_type(content_type: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    # The email package's parser is thorough but slow; senders repeat the same few header
    # values, and the door asks twice per request, so the answer is cached.
    msg = Message()
    msg["content-type"] = content_type
    params = tuple((k.lower(), v) for k, v in msg.get_params(failobj=[])[1:])
    return msg.get_content_type().lower(), params


def is_json(media_type: str) -> bool:
    return media_type in JSON_TYPES or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def supported(media_type: str) -> bool:
    return is_json(media_type) or media_type in (FORM_TYPE, MULTIPART_TYPE)


def form_pairs(text: str, encoding: str = "utf-8") -> list[tuple[str, str]]:
    """``urllib.parse.parse_qsl(text, keep_blank_values=True, encoding=encoding)``, the same
    pairs at about half its cost: a name or value without ``+`` or ``%`` (most of a form's)
    is taken as it is, without a call; ``unquote`` only for those with escapes."""
    pairs = []
    for field in text.split("&"):
        if not field:
            continue
        name, _, value = field.partition("=")
        if "+" in name:
            name = name.replace("+", " ")
        if "%" in name:
            name = unquote(name, encoding, "replace")
        if "+" in value:
            value = value.replace("+", " ")
        if "%" in value:
            value = unquote(value, encoding, "replace")
        pairs.append((name, value))
    return pairs


def _fold(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            existing = out[key]
            if isinstance(existing, list):
                existing.append(value)
            else:
                out[key] = [existing, value]
        else:
            out[key] = value
    return out


def parse_body(
    content_type: str | None, raw: bytes, limits: ParseLimits = DEFAULT_LIMITS
) -> ParsedBody:
    """Parse ``raw`` per ``content_type`` within ``limits``; BodyError (400/413/415) if not."""
    media_type, params = media_type_of(content_type)
    charset = params.get("charset")
    if is_json(media_type):
        if codec_name(charset) != "utf-8":
            raw = decode_text(raw, charset, "JSON body").encode()
        return ParsedBody(media_type, _parse_json(without_bom(raw), limits))
    if media_type == FORM_TYPE:
        text = decode_text(raw, charset, "form body")
        if text.count("&") >= limits.form_fields:
            raise BodyError(413, "too-large", f"the form has more than {limits.form_fields} fields")
        try:
            # Percent-escapes in the body's charset too (replaced where broken).
            pairs = form_pairs(text, codec_name(charset))
        except ValueError as exc:
            raise BodyError(400, "malformed-body", f"invalid form body: {exc}") from None
        return ParsedBody(media_type, _fold(pairs))
    if media_type == MULTIPART_TYPE:
        return ParsedBody(media_type, _parse_multipart(params.get("boundary"), raw, limits))
    raise unsupported_media_type(media_type)


def unsupported_media_type(media_type: str) -> BodyError:
    """The 415 for a body of a type :func:`supported` does not accept."""
    return BodyError(
        415,
        "unsupported-media-type",
        f"content type {media_type or '(none)'!r} is not accepted; send application/json, "
        f"{FORM_TYPE} or {MULTIPART_TYPE}",
    )


class _TooManyKeys(Exception):
    pass


def _too_many(limits: ParseLimits) -> BodyError:
    return BodyError(
        413, "too-large", f"the JSON body has more than {limits.json_keys} keys and items"
    )


def _parse_json(raw: bytes, limits: ParseLimits) -> Any:
    """JSON within ``limits``: orjson when it reads the document as :mod:`json` would, else
    :mod:`json` with its keys counted while parsing."""
    value, brackets = jsoncodec.fast_loads_counted(raw)
    if value is jsoncodec.UNPARSED:
        return _parse_json_text(decode_text(raw, None, "JSON body"), limits)
    # The walk is needed only when the text could break a limit: nesting is at most the
    # count of brackets, keys and items at most the count of bytes.
    if brackets > limits.json_depth or len(raw) > limits.json_keys:
        _check_shape(value, limits, keys=0, count_objects=True)
    return value


def _not_a_number(name: str) -> Any:
    raise BodyError(400, "malformed-body", f"invalid JSON: {name} is not a JSON number")


def _finite(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        _not_a_number(text if len(text) <= 24 else text[:24] + "...")
    return number


def _parse_json_text(text: str, limits: ParseLimits) -> Any:
    """The standard library's parse, for what orjson leaves to it: keys counted while
    parsing (so a huge document stops early), numbers longer than 64 bits kept exact, lone
    surrogates replaced; NaN and infinities refused (JSON has no such numbers)."""
    keys = 0

    def count_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal keys
        keys += len(pairs)
        if keys > limits.json_keys:
            raise _TooManyKeys
        return dict(pairs)

    try:
        value = json.loads(
            text, object_pairs_hook=count_pairs, parse_constant=_not_a_number, parse_float=_finite
        )
    except json.JSONDecodeError as exc:
        raise BodyError(
            400,
            "malformed-body",
            f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}",
        ) from None
    except RecursionError:
        raise BodyError(400, "malformed-body", "JSON nested too deeply") from None
    except _TooManyKeys:
        raise _too_many(limits) from None
    except ValueError as exc:  # an integer longer than Python converts
        if isinstance(exc, BodyError):
            raise
        raise BodyError(
            400, "malformed-body", "invalid JSON: a number with too many digits"
        ) from None
    _check_shape(value, limits, keys=keys, count_objects=False)
    if _SURROGATE_ESCAPE.search(text):
        value = _without_lone_surrogates(value)
    return value


def _check_shape(value: Any, limits: ParseLimits, *, keys: int, count_objects: bool) -> None:
    """Raise unless nesting is within ``json_depth`` and keys and items within ``json_keys``
    (``keys`` already counted; objects' keys counted here too when ``count_objects``)."""
    max_depth, max_keys = limits.json_depth, limits.json_keys
    count = keys

    def walk(node: Any, depth: int) -> None:
        nonlocal count
        if depth > max_depth:
            raise BodyError(400, "malformed-body", f"JSON nested deeper than {max_depth} levels")
        if isinstance(node, dict):
            children: Any = node.values()
            if count_objects:
                count += len(node)
        else:
            children = node
            count += len(node)
        if count > max_keys:
            raise _too_many(limits)
        for child in children:
            if isinstance(child, (dict, list)):
                walk(child, depth + 1)

    if isinstance(value, (dict, list)):
        walk(value, 1)


# A \uD800-\uDFFF escape: a pair of them is one character, a lone one is no text at all (it
# cannot be written as UTF-8). JavaScript makes them when it cuts a string inside an emoji.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _without_lone_surrogates(value: Any) -> Any:
    """``value`` with every lone surrogate replaced by U+FFFD, as a UTF-8 decoder would."""
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_without_lone_surrogates(k): _without_lone_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_lone_surrogates(item) for item in value]
    return value


def _parse_multipart(boundary: str | None, raw: bytes, limits: ParseLimits) -> dict[str, Any]:
    if not boundary:
        raise BodyError(400, "malformed-body", "multipart body without a boundary parameter")
    head = f'Content-Type: multipart/form-data; boundary="{boundary}"\r\n\r\n'.encode()
    message = BytesParser(policy=HTTP).parsebytes(head + raw)
    if not message.is_multipart() or message.defects:
        raise BodyError(400, "malformed-body", "multipart body does not parse")
    pairs: list[tuple[str, str]] = []
    dropped: list[str] = []
    for count, part in enumerate(message.iter_parts(), start=1):
        if count > limits.form_fields:
            raise BodyError(413, "too-large", f"the form has more than {limits.form_fields} fields")
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            raise BodyError(400, "malformed-body", "multipart part without a field name")
        if part.get_filename() is not None:
            if limits.files == "refuse":
                raise BodyError(
                    415,
                    "unsupported-media-type",
                    f"this endpoint does not accept file uploads (field {name!r})",
                )
            dropped.append(name)
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        charset = part.get_content_charset() or "utf-8"
        try:
            pairs.append((name, data.decode(charset)))
        except (LookupError, UnicodeDecodeError):
            raise BodyError(
                400, "malformed-body", f"multipart field {name!r} is not valid text"
            ) from None
    out = _fold(pairs)
    if dropped:
        out["_files_dropped"] = dropped
    return out
