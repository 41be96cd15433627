"""Secrets named in the sources file: ``env:NAME`` or ``file:/path``, never the value itself.

A reference is read once, when the sources file is validated (at start and by
``lead-intake check-config``), so a missing secret is reported with its key path before the
service takes any traffic. ``file:`` fits Kubernetes secret volumes (a trailing newline is
dropped); ``env:`` fits ``secretKeyRef`` environment variables and local shells.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import PlainSerializer, PlainValidator, SecretStr

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

SYNTAX_HELP = (
    "a secret is referenced, never written into the sources file: use env:VARIABLE_NAME "
    "or file:/path/to/secret"
)


@dataclass(frozen=True, slots=True)
class SecretRef:
    """Where a secret comes from (``ref``) and, when it could be read, its value."""

    ref: str
    value: SecretStr | None

    @property
    def available(self) -> bool:
        return self.value is not None

    def __str__(self) -> str:
        return self.ref


def read_reference(ref: str) -> SecretStr | None:
    """The secret behind ``ref``; None when the variable is unset/empty or the file unreadable."""
    kind, _, where = ref.partition(":")
    text: str | None
    if kind == "env":
        text = os.environ.get(where)
    else:
        try:
            text = Path(where).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            text = None
    if text is None:
        return None
    text = text.rstrip("\r\n")
    return SecretStr(text) if text else None


def parse_reference(value: Any) -> SecretRef:
    """Validate the syntax of a reference and read it (pydantic validator)."""
    if isinstance(value, SecretRef):
        return value
    if not isinstance(value, str):
        raise ValueError(SYNTAX_HELP)  # pydantic reports ValueError, not TypeError
    ref = value.strip()
    kind, sep, where = ref.partition(":")
    if not sep or kind not in ("env", "file"):
        raise ValueError(SYNTAX_HELP)
    if kind == "env" and not _ENV_NAME.match(where):
        raise ValueError(f"env:{where} is not an environment variable name")
    if kind == "file" and not where:
        raise ValueError("file: needs a path, e.g. file:/var/run/secrets/intake/partner")
    return SecretRef(ref, read_reference(ref))


def describe_missing(ref: SecretRef) -> str:
    kind, _, where = ref.ref.partition(":")
    if kind == "env":
        return f"{ref.ref} (environment variable {where} is not set or empty)"
    return f"{ref.ref} (file missing, unreadable or empty)"


SecretReference = Annotated[
    SecretRef,
    PlainValidator(parse_reference),
    PlainSerializer(lambda ref: ref.ref, return_type=str),
]
"""A pydantic field type: ``env:NAME`` / ``file:/path`` in, a read :class:`SecretRef` out."""
