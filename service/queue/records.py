"""The submission record: what happened to one submission, as kept in its Redis hash."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, get_args

State = Literal[
    "queued",
    "processing",
    "retrying",
    "created",
    "attached",
    "skipped",
    "rejected",
    "dead",
    "erased",
]
STATES: tuple[str, ...] = get_args(State)
FINAL_STATES: frozenset[str] = frozenset({"created", "attached", "skipped", "rejected", "dead"})
"""The outcomes a submission can end in; these can be replayed."""
TERMINAL_STATES: frozenset[str] = FINAL_STATES | {"erased"}
"""Nothing more happens to a submission in these (``erased``: personal data removed)."""

# Hash fields holding JSON rather than plain strings.
_JSON_FIELDS = ("last_error", "close_response", "warnings", "lead", "candidates")
# Hash fields that are attributes of SubmissionRecord (every other field goes to ``extra``).
_COLUMNS = frozenset(
    {
        "id",
        "source",
        "state",
        "received_at",
        "updated_at",
        "attempts",
        "lead_id",
        "envelope",
        "history",
    }
)


_SECONDS: dict[int, str] = {}


def iso(ts: float) -> str:
    """Unix seconds → ISO-8601 UTC with milliseconds, the one time format of records.

    The same text as ``datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")``
    with ``Z``, at a third of the cost: the whole second's text is kept for the few seconds
    in use (every history event of every submission formats a time)."""
    if ts < 0:
        return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
    fraction, whole = math.modf(ts)
    second = int(whole)
    micros = round(fraction * 1e6)  # rounded to microseconds first, as datetime does
    if micros >= 1_000_000:
        second, micros = second + 1, micros - 1_000_000
    text = _SECONDS.get(second)
    if text is None:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        if len(_SECONDS) >= 8:
            _SECONDS.clear()
        _SECONDS[second] = text
    return f"{text}.{micros // 1000:03d}Z"


def history_event(ts: float, state: str, detail: Mapping[str, Any] | None = None) -> str:
    """One line of a record's history: ``{"at", "state"}``, with ``detail`` when given."""
    if not detail:  # the common event: a state name (an identifier) at a time
        return f'{{"at":"{iso(ts)}","state":"{state}"}}'
    event: dict[str, Any] = {"at": iso(ts), "state": state, "detail": dict(detail)}
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False, default=str)


def history_event_head(ts: float, state: str, detail_key: str) -> str:
    """:func:`history_event` with the one ``detail`` entry ``detail_key`` cut before its value,
    for a script that knows the value: it appends the value (a JSON number) and ``}}``."""
    return f'{{"at":"{iso(ts)}","state":"{state}","detail":{{"{detail_key}":'


@dataclass(frozen=True, slots=True)
class SubmissionRecord:
    id: str
    source: str
    state: str
    received_at: float
    updated_at: float
    attempts: int
    lead_id: str | None = None
    envelope: str | None = None
    history: tuple[dict[str, Any], ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @classmethod
    def from_hash(cls, raw: Mapping[str, str]) -> SubmissionRecord:
        history = tuple(
            json.loads(line) for line in (raw.get("history") or "").split("\n") if line.strip()
        )
        extra: dict[str, Any] = {}
        for key, value in raw.items():
            if key in _COLUMNS:
                continue
            if key in _JSON_FIELDS:
                try:
                    extra[key] = json.loads(value)
                except ValueError:
                    extra[key] = value
            else:
                extra[key] = value
        return cls(
            id=raw.get("id", ""),
            source=raw.get("source", ""),
            state=raw.get("state", ""),
            received_at=float(raw.get("received_at") or 0),
            updated_at=float(raw.get("updated_at") or 0),
            attempts=int(raw.get("attempts") or 0),
            lead_id=raw.get("lead_id") or None,
            envelope=raw.get("envelope"),
            history=history,
            extra=extra,
        )

    def to_public(self, *, include_payload: bool = True) -> dict[str, Any]:
        """The record as the admin API shows it."""
        out: dict[str, Any] = {
            "id": self.id,
            "source": self.source,
            "state": self.state,
            "received_at": iso(self.received_at),
            "updated_at": iso(self.updated_at),
            "attempts": self.attempts,
            "lead_id": self.lead_id,
        }
        out.update(self.extra)
        if include_payload and self.envelope:
            out["payload"] = self.payload()
        out["history"] = list(self.history)
        return out

    def payload(self) -> Any:
        """The submission's parsed body (None when erased or unreadable)."""
        if not self.envelope:
            return None
        try:
            return json.loads(self.envelope).get("body")
        except ValueError:
            return None


def encode_fields(fields: Mapping[str, Any]) -> list[str]:
    """Flatten field/value pairs for the transition script; dicts and lists become JSON."""
    flat: list[str] = []
    for key, value in fields.items():
        if value is None:
            continue
        if isinstance(value, (dict, list, tuple)):
            text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
        else:
            text = str(value)
        flat.extend((key, text))
    return flat
