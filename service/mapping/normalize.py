"""Normalisation of extracted values into the canonical record.

Phones become E.164 (phonenumbers, per-source default region), emails are trimmed,
lower-cased and syntax-checked (no DNS), text is trimmed, stripped of control characters and
cut to the configured limits. A value that cannot be used is dropped from the record with a
``Notice``; it stays in the note, and the lead is never lost because of it.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import phonenumbers

from service.mapping.spec import ADDRESS_FIELDS, MappingLimits
from service.mapping.text import (
    first_scalar,
    host_of,
    is_empty,
    key_token,
    scalar_text,
    split_full_name,
    to_e164,
)

_MAX_DEPTH = 8
# Zero-width and bidirectional-override characters: invisible, used to spoof names.
_INVISIBLE = dict.fromkeys(
    [0x200B, 0x200E, 0x200F, 0xFEFF, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
)
#: Control characters (Unicode category Cc: U+0000-U+001F, U+007F-U+009F).
_CONTROL = [*range(0x20), *range(0x7F, 0xA0)]
#: Single-line text: invisible characters and control characters that are not white space
#: are dropped (white space is collapsed afterwards).
_SINGLE_LINE = {**_INVISIBLE, **dict.fromkeys(c for c in _CONTROL if not chr(c).isspace())}
#: Multi-line text: CR and LINE SEPARATOR become LF, other control characters but tab go.
_MULTILINE: dict[int, int | None] = {
    **dict.fromkeys(code for code in _CONTROL if chr(code) not in "\n\t"),
    ord("\r"): ord("\n"),
    0x2028: ord("\n"),
}
_BLANK_LINES = re.compile(r"\n{3,}")
_LOCAL_PART = re.compile(r"^[^\s@\"(),:;<>\[\]\\.]+(?:\.[^\s@\"(),:;<>\[\]\\.]+)*$")
_DOMAIN_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_ANGLE_ADDRESS = re.compile(r"<([^<>]+)>\s*$")
# The same test as _valid_email's steps, in one match, for printable ASCII (no line break, so
# ``$`` in the steps' patterns is the end of the text, and the IDNA codec leaves an ASCII domain
# as it is, refusing only empty or over-long labels, which the label pattern refuses too): a
# local part of 1-64 characters, one "@", two or more domain labels, a top-level label of
# letters (two or more) or an ``xn--`` label, at most 254 characters in all.
_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_PLAIN_EMAIL = re.compile(
    r"(?=.{1,254}\Z)(?=[^@]{1,64}@[^@]*\Z)"
    r"[^\s@\"(),:;<>\[\]\\.]+(?:\.[^\s@\"(),:;<>\[\]\\.]+)*"
    rf"@(?:{_LABEL}\.)+(?:[a-z]{{2,63}}|xn--[a-z0-9-]{{0,59}}(?<!-))\Z"
)
_COUNTRY_ALIASES = {"usa": "US", "unitedstatesofamerica": "US", "uk": "GB", "england": "GB"}


@functools.cache
def _country_names() -> dict[str, str]:
    """Country name (any language phonenumbers knows, loosely compared) -> ISO alpha-2."""
    # Imported here: phonenumbers' geodata package takes about 0.4 s to import, paid by every
    # process and command otherwise, and only a country given by name needs it.
    from phonenumbers.geodata.locale import LOCALE_DATA  # noqa: PLC0415

    names = dict(_COUNTRY_ALIASES)
    for code, by_language in LOCALE_DATA.items():
        for name in by_language.values():
            resolved = by_language.get(name[1:], "") if name.startswith("*") else name
            if resolved and not resolved.startswith("*"):
                names.setdefault(key_token(resolved), code)
    return names


def country_code(text: str) -> str | None:
    """ISO 3166 alpha-2 for a code or a country name ("United States" -> "US"), else None."""
    token = key_token(text)
    if token in _COUNTRY_ALIASES:
        return _COUNTRY_ALIASES[token]
    if len(text) == 2 and text.isalpha():
        return text.upper()
    return _country_names().get(token)


@dataclass(frozen=True, slots=True)
class Notice:
    """A warning: ``message`` never holds personal data; ``value`` is the value as submitted."""

    message: str
    value: str | None = None


def clean_text(text: str, *, multiline: bool = False) -> str:
    """NFC, no control or invisible characters, trimmed; single-line text has one-space runs."""
    ascii_only = text.isascii()  # ASCII text is NFC and has no invisible characters
    if ascii_only and text.isprintable():  # no control characters, not even tab or newline
        return " ".join(text.split()) if not multiline else text.strip()
    if not ascii_only:
        text = unicodedata.normalize("NFC", text)
    if not multiline:
        # Line breaks and any other white space (control or not) become single spaces.
        return " ".join(text.translate(_SINGLE_LINE).split())
    if not ascii_only:
        text = text.translate(_INVISIBLE)  # before CR LF is joined: "\r<ZWSP>\n" is one break
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    kept = text.translate(_MULTILINE)
    if "\n" not in kept:
        return kept.strip()
    kept = "\n".join([line.rstrip() for line in kept.split("\n")])
    if "\n\n\n" in kept:
        kept = _BLANK_LINES.sub("\n\n", kept)
    return kept.strip()


def cut(text: str, limit: int) -> tuple[str, bool]:
    """``text`` cut to ``limit`` characters (ending with an ellipsis), and whether it was cut."""
    if len(text) <= limit:
        return text, False
    return text[: limit - 1].rstrip() + "\u2026", True


def normalize_email(value: Any) -> tuple[str | None, Notice | None]:
    """A lower-case, syntax-checked address, or (None, notice)."""
    raw = scalar_text(first_scalar(value))
    if raw is None or not raw.strip():
        return None, None
    text = clean_text(raw)
    match = _ANGLE_ADDRESS.search(text) if ">" in text else None
    if match:
        text = match.group(1)
    text = text.strip().removeprefix("mailto:").strip().lower()
    if _valid_email(text):
        return text, None
    return None, Notice("email is not a valid address; left out of the lead", raw)


def _valid_email(text: str) -> bool:
    """Whether ``text`` is an address the lead takes: one match for printable ASCII (nearly
    every address), :func:`_valid_email_steps` for the rest; the same answer for every text."""
    if text.isascii() and text.isprintable():
        return _PLAIN_EMAIL.match(text) is not None
    return _valid_email_steps(text)


def _valid_email_steps(text: str) -> bool:
    if len(text) > 254 or text.count("@") != 1:
        return False
    local, domain = text.split("@")
    if not local or len(local) > 64 or not _LOCAL_PART.match(local):
        return False
    try:
        ascii_domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        return False
    labels = ascii_domain.split(".")
    if len(labels) < 2 or not all(_DOMAIN_LABEL.match(label) for label in labels):
        return False
    tld = labels[-1]
    return tld.startswith("xn--") or (tld.isalpha() and len(tld) >= 2)


def normalize_phone(
    value: Any, region: str | None, check: str = "valid"
) -> tuple[str | None, Notice | None]:
    """E.164, or (None, notice) for a number that cannot be read."""
    raw = scalar_text(first_scalar(value))
    if raw is None or not raw.strip():
        return None, None
    text = clean_text(raw).removeprefix("tel:")
    if region is None and text.isdigit() and 8 <= len(text) <= 15:
        # All digits with no region to read them in: a country code without its "+" (Webflow
        # sends the phone as a JSON number). Read so when that gives a valid number.
        international = to_e164("+" + text, None)
        if international is not None:
            return international, None
    where = f"default region {region}" if region else "no default region set"
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None, Notice(f"phone could not be read ({where}); left out of the contact", raw)
    if check == "possible":
        reason = phonenumbers.is_possible_number_with_reason(number)
        usable = reason == phonenumbers.ValidationResult.IS_POSSIBLE
    else:
        usable = phonenumbers.is_valid_number(number)
    if not usable:
        return None, Notice(
            f"phone is not a {check} number ({where}); left out of the contact", raw
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), None


def normalize_url(value: Any) -> tuple[str | None, Notice | None]:
    """An http(s) URL (``https://`` added to a bare domain), or (None, notice)."""
    raw = scalar_text(first_scalar(value))
    if raw is None or not raw.strip():
        return None, None
    text = clean_text(raw)
    lowered = text.lower()
    if not lowered.startswith(("http://", "https://")) and "://" not in lowered:
        text = "https://" + text
    if text.lower().startswith(("http://", "https://")) and host_of(text) and " " not in text:
        return text, None
    return None, Notice("website is not a usable URL; left out of the lead", raw)


class RecordBuilder:
    """Turns extracted values (canonical path -> raw value) into the canonical record."""

    def __init__(self, limits: MappingLimits, region: str | None, phone_check: str) -> None:
        self._limits = limits
        self._region = region
        self._phone_check = phone_check
        self.notices: list[Notice] = []

    def build(self, raw: dict[str, Any]) -> dict[str, Any]:
        record: dict[str, Any] = {}
        for path, value in raw.items():
            self.add(record, path, value)
        self.derive_names(record)
        return record

    def add(self, record: dict[str, Any], path: str, value: Any) -> None:
        """Put one extracted value into ``record`` at ``path``, normalised (or leave it out)."""
        cleaned = self._field(path, value)
        if cleaned is None:
            return
        group, _, name = path.partition(".")
        if name:
            record.setdefault(group, {})[name] = cleaned
        else:
            record[path] = cleaned

    def _field(self, path: str, value: Any) -> Any:
        if is_empty(value):
            return None
        if path == "email":
            return self.noted(normalize_email(value))
        if path == "phone":
            return self.noted(normalize_phone(value, self._region, self._phone_check))
        if path == "website":
            return self.noted(normalize_url(value))
        if path.startswith("extra."):
            return self._any(value, path, 0)
        limit = self._limits.message if path == "message" else self._limits.text
        if path.startswith("attribution.") and path.endswith(("page_url", "referrer")):
            limit = self._limits.extra
        text = self.text(value, path, limit, multiline=path == "message")
        if text and path == "address.country":
            return country_code(text) or text
        return text

    def text(self, value: Any, path: str, limit: int, *, multiline: bool = False) -> str | None:
        raw = scalar_text(value)
        if raw is None:
            return None
        text, was_cut = cut(clean_text(raw, multiline=multiline), limit)
        if was_cut:
            self.notices.append(Notice(f"{path} was cut to {limit} characters"))
        return text or None

    def _any(self, value: Any, path: str, depth: int) -> Any:
        if isinstance(value, str):
            return self.text(value, path, self._limits.extra, multiline=True)
        if depth >= _MAX_DEPTH:
            return None
        if isinstance(value, list):
            items = [self._any(item, path, depth + 1) for item in value]
            return [item for item in items if item is not None] or None
        if isinstance(value, dict):
            pairs = {str(k): self._any(v, path, depth + 1) for k, v in value.items()}
            return {k: v for k, v in pairs.items() if v is not None} or None
        return value

    def as_text(
        self, path: str, limit: int | None = None, *, multiline: bool = False
    ) -> Callable[[Any], str | None]:
        """A converter to cleaned text for template values (``limit`` default: text)."""
        size = limit or self._limits.text
        return lambda value: self.text(value, path, size, multiline=multiline)

    def as_url(self, value: Any) -> str | None:
        return self.noted(normalize_url(value))

    def as_email(self, value: Any) -> str | None:
        return self.noted(normalize_email(value))

    def as_phone(self, value: Any) -> str | None:
        return self.noted(normalize_phone(value, self._region, self._phone_check))

    def noted(self, result: tuple[str | None, Notice | None]) -> str | None:
        value, notice = result
        if notice is not None:
            self.notices.append(notice)
        return value

    def derive_names(self, record: dict[str, Any]) -> None:
        """full_name from first and last name, or first and last from full_name."""
        first, last = record.get("first_name"), record.get("last_name")
        if not record.get("full_name") and (first or last):
            record["full_name"] = " ".join(part for part in (first, last) if part)
        elif record.get("full_name") and not (first or last):
            split_first, split_last = split_full_name(record["full_name"])
            if split_first:
                record["first_name"] = split_first
            if split_last:
                record["last_name"] = split_last


def address_of(record: dict[str, Any], label: str) -> dict[str, Any] | None:
    """A Close address object from ``address.*``, or None when no part is present."""
    parts = record.get("address") or {}
    address = {key: parts[key] for key in ADDRESS_FIELDS if parts.get(key)}
    return {"label": label, **address} if address else None
