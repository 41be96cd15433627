"""Values as text, for both the JMESPath functions and normalisation.

``text_of`` is the one place a scalar becomes text: numbers without a trailing ``.0``,
booleans as ``yes``/``no`` (the form a salesperson reads in a note or a custom field, and
what ``lower()``, ``join_any()``, ``lookup()``... see). ``scalar_text`` adds lists and
objects for notes and record fields. The rest are the small helpers both sides share: what
counts as empty, loose key comparison, name splitting, phone numbers and host names.

Nothing here raises for odd input and nothing here knows about JMESPath.
"""

from __future__ import annotations

import functools
from typing import Any
from urllib.parse import urlsplit

import phonenumbers

_HONORIFICS = frozenset({"mr", "mrs", "ms", "miss", "mx", "dr", "prof", "sir", "madam"})


def is_empty(value: Any) -> bool:
    """None, an empty or blank string, an empty list or object."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, (list, dict)):
        return not value
    return False


def text_of(value: Any) -> str | None:
    """A scalar as text: numbers without a trailing ``.0``, booleans ``yes``/``no``.

    None for null, lists and objects."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return None


def scalar_text(value: Any, *, joiner: str = ", ") -> str | None:
    """Text of a scalar; a list's non-empty items joined; an object's scalar values joined."""
    if isinstance(value, str):  # the common case first: no call
        return value
    if isinstance(value, list):
        parts = [scalar_text(item, joiner=joiner) for item in value[:100]]
        return joiner.join(p for p in parts if p and p.strip()) or None
    if isinstance(value, dict):
        parts = [scalar_text(item, joiner=" ") for item in list(value.values())[:100]]
        return " ".join(p for p in parts if p and p.strip()) or None
    return text_of(value)


def first_scalar(value: Any) -> Any:
    """The first non-empty item of a list (a repeated form field), else the value itself."""
    if isinstance(value, list):
        for item in value:
            if not is_empty(item) and not isinstance(item, (list, dict)):
                return item
        return None
    return value


#: Deletes every ASCII character that is not a lower-case letter or a digit.
_ASCII_NOT_ALNUM = dict.fromkeys(
    code for code in range(128) if not (chr(code).isdigit() or "a" <= chr(code) <= "z")
)
#: Keys longer than this are not memoised (keys are sender data: the cache stays small).
_TOKEN_CACHE_KEY_LIMIT = 64


def _key_token(name: str) -> str:
    if name.isascii():  # casefold is lower() and isalnum() is [A-Za-z0-9] for ASCII
        return name.lower().translate(_ASCII_NOT_ALNUM)
    return "".join(ch for ch in name.casefold() if ch.isalnum())


_cached_key_token = functools.lru_cache(maxsize=4096)(_key_token)


def key_token(name: str) -> str:
    """A key compared loosely: lower-case, letters and digits only ("E-Mail" -> "email").

    Memoised (bounded: 4,096 keys of at most 64 characters), since pick() tokenises every
    key of the object it searches on every call."""
    if len(name) <= _TOKEN_CACHE_KEY_LIMIT:
        return _cached_key_token(name)
    return _key_token(name)


def split_full_name(full: str) -> tuple[str | None, str | None]:
    """("Jane", "van der Berg") from "Jane van der Berg"; handles "Last, First" and titles."""
    text = " ".join(full.split())
    if "," in text:
        last, _, first = text.partition(",")
        return (first.strip() or None, last.strip() or None)
    words = text.split(" ")
    while len(words) > 1 and key_token(words[0]) in _HONORIFICS:
        words = words[1:]
    if not words or not words[0]:
        return (None, None)
    return (words[0], " ".join(words[1:]) or None)


def to_e164(value: Any, region: str | None) -> str | None:
    """E.164 for a valid phone number, else None (no exception for any input)."""
    text = text_of(value)
    if text is None or not text.strip():
        return None
    try:
        number = phonenumbers.parse(text, region.upper() if region else None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def host_of(value: str) -> str | None:
    """Lower-case host of an email address or URL, without a leading ``www.``."""
    text = value.strip()
    if "@" in text and "/" not in text.split("@", 1)[0]:
        host = text.rsplit("@", 1)[1]
    else:
        if "//" not in text:
            text = "//" + text
        try:
            host = urlsplit(text).hostname or ""
        except ValueError:
            return None
    host = host.strip().strip(".").lower()
    host = host.removeprefix("www.")
    return host if "." in host and " " not in host else None
