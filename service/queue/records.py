"""The submission record: what happened to one submission, as kept in its Redis hash.

The one module that knows the hash's fields. Python reads a record only as a typed
:class:`Record` and writes it only through the scripts of ``queue/`` (built from typed values);
the fields a Lua script writes by itself are named here too (``dead_entry``, ``replayed_at``...).

What an attempt has done so far is one typed value, :class:`Progress`, stored as one JSON field
(``progress``): a replay clears it with one ``HDEL``, so a progress field added here can never
be forgotten by a script. Records written before ``progress`` existed kept each progress value
in its own field; :meth:`Progress.from_hash` still reads those.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal, get_args

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


# -- progress -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Progress:
    """What the attempts at a submission have done so far; a retry resumes from it and a
    replay clears it (so the lookup runs again: a created lead is found, not made twice)."""

    lead_created: bool = False
    """This submission created ``lead_id`` (rather than finding it)."""
    lead_url: str | None = None
    """The lead's page in Close, as Close gave it."""
    matched_via: str | None = None
    """How the person's existing lead was found: ``cache``, ``search:email``, ``search:phone``."""
    candidates: tuple[str, ...] = ()
    """Every lead the search found for the person (the chosen one among them)."""
    contact_done: bool = False
    """The ``contact`` policy ran: the person is a contact of the matched lead."""
    contact_added: bool | None = None
    """Whether that needed a new contact."""
    note_id: str | None = None
    """The note posted on the lead."""
    create_started_at: float | None = None
    """A create was sent at this time and its outcome is not known yet."""
    next_attempt_at: float | None = None
    """When the retry schedule tries again."""

    def changed(self, **changes: Any) -> Progress:
        return replace(self, **changes)

    def to_json(self) -> str:
        """The fields that differ from the defaults, as compact JSON."""
        data = {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if getattr(self, f.name) != f.default
        }
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_hash(cls, raw: Mapping[str, str]) -> Progress:
        """The ``progress`` field of a record hash (or, for an older record, its loose fields)."""
        text = raw.get("progress")
        if text:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError("progress is not a JSON object")
            return cls._from_values(data)
        legacy = {name: raw[name] for name in _LEGACY_PROGRESS if raw.get(name)}
        if not legacy:
            return _NO_PROGRESS
        candidates = legacy.get("candidates")
        return cls(
            lead_created=legacy.get("lead_created") == "1",
            lead_url=legacy.get("lead_url"),
            matched_via=legacy.get("matched_via"),
            candidates=tuple(json.loads(candidates)) if candidates else (),
            contact_done=bool(legacy.get("contact_done")),
            contact_added=(
                legacy["contact_added"] == "True" if "contact_added" in legacy else None
            ),
            note_id=legacy.get("note_id"),
            create_started_at=_float(legacy.get("create_started_at")),
            next_attempt_at=_float(legacy.get("next_attempt_at")),
        )

    @classmethod
    def _from_values(cls, data: Mapping[str, Any]) -> Progress:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if "candidates" in values:
            values["candidates"] = tuple(str(c) for c in values["candidates"] or ())
        for name in ("create_started_at", "next_attempt_at"):
            if name in values:
                values[name] = _float(values[name])
        return cls(**values)

    def to_public(self) -> dict[str, Any]:
        """The set fields, as the admin API shows them (times in ISO-8601)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value == f.default:
                continue
            if f.name in ("create_started_at", "next_attempt_at"):
                value = iso(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out


_NO_PROGRESS = Progress()
_LEGACY_PROGRESS = tuple(f.name for f in fields(Progress))


def _float(value: Any) -> float | None:
    if value in (None, ""):
        return None
    return float(value)


# -- the record ---------------------------------------------------------------------------------

# Fields holding JSON rather than plain strings.
_JSON_FIELDS = frozenset({"last_error", "close_response", "warnings"})
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
        *_LEGACY_PROGRESS,
    }
)
ENVELOPE_FIELD = "envelope"
"""The field holding the envelope as received (read alone by the worker's tracing)."""
PROGRESS_FIELDS: tuple[str, ...] = ("progress", "lead_id", "dead_entry", *_LEGACY_PROGRESS)
"""The hash fields a replay deletes: the progress, the lead found or made, the dead letter."""


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
    progress: Progress = _NO_PROGRESS
    last_error: Any = None
    """What the last failed attempt met (an object, or text)."""
    close_response: Any = None
    """Close's answer to a refused request."""
    warnings: tuple[str, ...] = ()
    """What the mapping dropped or changed (no personal data)."""
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
            replayed_at=_float(raw.get("replayed_at")),
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
