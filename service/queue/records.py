"""The submission record: what happened to one submission, as kept in its Redis hash.

The one module that knows the hash's fields. Python reads a record only as a typed
:class:`Record` and writes it only through the scripts of ``queue/`` (built from typed values);
the fields a Lua script writes by itself are named here too (``dead_entry``, ``replayed_at``...).

What an attempt has done so far is one typed value, :class:`~service.queue.progress.Progress`
(``progress.py``), stored as one JSON field (``progress``) that Python writes whole: a progress
field added there can never be forgotten by a script.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from service.queue.progress import LEGACY_PROGRESS, Progress, parse_float
from service.times import iso

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
STATES: tuple[State, ...] = get_args(State)
FINAL_STATES: frozenset[State] = frozenset({"created", "attached", "skipped", "rejected", "dead"})
"""The outcomes a submission can end in; these can be replayed."""
TERMINAL_STATES: frozenset[State] = FINAL_STATES | {"erased"}
"""Nothing more happens to a submission in these (``erased``: personal data removed)."""
REPLAYABLE: tuple[State, ...] = tuple(s for s in STATES if s in FINAL_STATES)


def as_state(value: str) -> State:
    """``value`` as a :data:`State`; ValueError for a name that is not one."""
    for state in STATES:
        if state == value:
            return state
    raise ValueError(f"not a submission state: {value!r}")


# -- history ------------------------------------------------------------------------------------


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


# -- the record ---------------------------------------------------------------------------------

# Fields holding JSON rather than plain strings.
_JSON_FIELDS = frozenset({"last_error", "close_response", "warnings", "fetched"})
# Every field of the hash this module knows (anything else is shown as ``unknown``).
_KNOWN = frozenset(
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
        "progress",
        "delivery_key",
        "reason",
        "replayed_at",
        "previous_lead_id",
        "erased_from",
        "dead_entry",
        *_JSON_FIELDS,
        *LEGACY_PROGRESS,
    }
)
ENVELOPE_FIELD = "envelope"
"""The field holding the envelope as received (read alone by the worker's tracing)."""
REPLAY_CLEARS: tuple[str, ...] = ("dead_entry", *LEGACY_PROGRESS)
"""The hash fields a replay deletes (besides writing the progress it keeps)."""


@dataclass(frozen=True, slots=True)
class Record:
    """One submission's record, typed."""

    id: str
    source: str
    state: State
    received_at: float
    updated_at: float
    attempts: int
    lead_id: str | None = None
    envelope: str | None = None
    """The :class:`~service.envelope.Envelope` as JSON (None once erased)."""
    history: tuple[dict[str, Any], ...] = ()
    progress: Progress = field(default_factory=Progress)
    last_error: Any = None
    """What the last failed attempt met (an object, or text)."""
    close_response: Any = None
    """Close's answer to a refused request."""
    warnings: tuple[str, ...] = ()
    """What the mapping dropped or changed (no personal data)."""
    fetched: Any = None
    """What hydration fetched from the provider for a thin payload (:class:`Fetched` as
    JSON: ``provider``, ``request``, ``at``, ``body``); personal data. Kept by a replay (the
    provider may have deleted it since), removed by an erase."""
    delivery_key: str | None = None
    """What identified the delivery at the door (``webhook-id``, ``body-hash``...)."""
    reason: str | None = None
    """Why the door refused it (``spam``), for records that never entered the stream."""
    replayed_at: float | None = None
    previous_lead_id: str | None = None
    """The lead of the outcome before the last replay."""
    erased_from: State | None = None
    dead_entry: str | None = None
    """The record's entry in the dead-letter stream."""
    unknown: Mapping[str, str] = field(default_factory=dict)
    """Fields this version does not know (written by a newer one), kept for display."""

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @classmethod
    def from_hash(cls, raw: Mapping[str, str]) -> Record:
        """The record of a hash as Redis returns it; ValueError when it is damaged."""
        history = tuple(
            json.loads(line) for line in (raw.get("history") or "").split("\n") if line.strip()
        )
        values: dict[str, Any] = {}
        for name in _JSON_FIELDS:
            if raw.get(name):
                try:
                    values[name] = json.loads(raw[name])
                except ValueError:
                    values[name] = raw[name]
        warnings = values.pop("warnings", None)
        erased_from = raw.get("erased_from")
        return cls(
            id=raw.get("id", ""),
            source=raw.get("source", ""),
            state=as_state(raw.get("state", "")),
            received_at=float(raw.get("received_at") or 0),
            updated_at=float(raw.get("updated_at") or 0),
            attempts=int(raw.get("attempts") or 0),
            lead_id=raw.get("lead_id") or None,
            envelope=raw.get("envelope"),
            history=history,
            progress=Progress.from_hash(raw),
            warnings=tuple(str(w) for w in warnings) if isinstance(warnings, list) else (),
            delivery_key=raw.get("delivery_key") or None,
            reason=raw.get("reason") or None,
            replayed_at=parse_float(raw.get("replayed_at")),
            previous_lead_id=raw.get("previous_lead_id") or None,
            erased_from=as_state(erased_from) if erased_from else None,
            dead_entry=raw.get("dead_entry") or None,
            unknown={k: v for k, v in raw.items() if k not in _KNOWN},
            **values,
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
        out.update(self.progress.to_public())
        optional: dict[str, Any] = {
            "last_error": self.last_error,
            "close_response": self.close_response,
            "warnings": list(self.warnings) or None,
            "delivery_key": self.delivery_key,
            "reason": self.reason,
            "replayed_at": iso(self.replayed_at) if self.replayed_at is not None else None,
            "previous_lead_id": self.previous_lead_id,
            "erased_from": self.erased_from,
        }
        out.update({k: v for k, v in optional.items() if v is not None})
        out.update(self.unknown)
        if include_payload and self.envelope:
            out["payload"] = self.payload()
        if include_payload and self.fetched is not None:
            out["fetched"] = self.fetched
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
