"""What the attempts at a submission have done so far: :class:`Progress`, with a
:class:`StepMark` per step after the lead. Kept in the record as one JSON field, written whole by
Python; records written before that field existed kept each value in its own hash field, and
:meth:`Progress.from_hash` still reads those.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from service.times import iso

# -- progress -----------------------------------------------------------------------------------

MarkState = Literal["started", "done", "skipped", "failed"]


@dataclass(frozen=True, slots=True)
class StepMark:
    """How far one step of a submission's work got (``Progress.steps`` by step name).

    ``started``: its request may have reached Close and its answer is not known yet, so the next
    attempt looks for its effect before sending it again; ``done`` (``close_id`` what it made or
    found), ``skipped`` (``reason`` why nothing was needed) and ``failed`` (Close refused it for
    good: ``error`` holds Close's answer) are final."""

    state: MarkState
    at: float
    close_id: str | None = None
    reason: str | None = None
    error: Any = None
    detail: Mapping[str, Any] = field(default_factory=dict)
    """Step-specific facts (who owns the lead, the fields a PUT changed...)."""

    @property
    def final(self) -> bool:
        return self.state != "started"

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {"state": self.state, "at": self.at}
        for name in ("close_id", "reason", "error"):
            if getattr(self, name) is not None:
                data[name] = getattr(self, name)
        if self.detail:
            data["detail"] = dict(self.detail)
        return data

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> StepMark:
        state = data.get("state")
        if state not in ("started", "done", "skipped", "failed"):
            raise ValueError(f"not a step state: {state!r}")
        detail = data.get("detail")
        return cls(
            state=state,
            at=float(data.get("at") or 0),
            close_id=data.get("close_id"),
            reason=data.get("reason"),
            error=data.get("error"),
            detail=dict(detail) if isinstance(detail, Mapping) else {},
        )

    def to_public(self) -> dict[str, Any]:
        return {**self.to_data(), "at": iso(self.at)}


@dataclass(frozen=True, slots=True)
class Progress:
    """What the attempts at a submission have done so far; a retry resumes from it. A replay
    keeps what reached Close (the lead, the steps done or skipped) and drops the rest, so it
    re-runs only what did not happen."""

    lead_created: bool = False
    """This submission created ``lead_id`` (rather than finding it)."""
    lead_url: str | None = None
    """The lead's page in Close, as Close gave it."""
    matched_via: str | None = None
    """How the person's existing lead was found: ``cache``, ``search:email``, ``search:phone``."""
    candidates: tuple[str, ...] = ()
    """Every lead the search found for the person (the chosen one among them)."""
    create_started_at: float | None = None
    """A create was sent at this time and its outcome is not known yet."""
    next_attempt_at: float | None = None
    """When the retry schedule tries again."""
    link: Mapping[str, Any] | None = None
    """Two leads this submission's identities led to (``leads``, ``identities``, ``via``):
    what the ``link`` step acts on."""
    steps: Mapping[str, StepMark] = field(default_factory=dict)
    """The steps after the lead (note, contact, follow-ups...), by name, in the order run."""

    def changed(self, **changes: Any) -> Progress:
        return replace(self, **changes)

    def marked(self, name: str, mark: StepMark) -> Progress:
        """This progress with step ``name`` at ``mark``."""
        return replace(self, steps={**self.steps, name: mark})

    def for_replay(self) -> Progress:
        """What a replay keeps: the lead and the steps that reached Close."""
        kept = {name: m for name, m in self.steps.items() if m.state in ("done", "skipped")}
        return Progress(
            lead_created=self.lead_created,
            lead_url=self.lead_url,
            matched_via=self.matched_via,
            candidates=self.candidates,
            link=self.link,
            steps=kept,
        )

    def to_json(self) -> str:
        """The fields that differ from the defaults, as compact JSON."""
        data: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "steps":
                if value:
                    data["steps"] = {name: mark.to_data() for name, mark in value.items()}
            elif value != f.default:
                data[f.name] = value
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str)

    @classmethod
    def from_hash(cls, raw: Mapping[str, str]) -> Progress:
        """The ``progress`` field of a record hash (or, for an older record, its loose fields)."""
        text = raw.get("progress")
        if text:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError("progress is not a JSON object")
            return cls._from_values(data)
        legacy = {name: raw[name] for name in LEGACY_PROGRESS if raw.get(name)}
        if not legacy:
            return _NO_PROGRESS
        candidates = legacy.get("candidates")
        steps: dict[str, StepMark] = {}
        at = parse_float(raw.get("updated_at")) or 0.0
        if legacy.get("contact_done"):
            added = legacy.get("contact_added") == "True"
            steps["contact"] = StepMark(
                "done" if added else "skipped",
                at,
                reason=None if added else "the person is already a contact of the lead",
            )
        if legacy.get("note_id"):
            steps["note"] = StepMark("done", at, close_id=legacy["note_id"])
        return cls(
            lead_created=legacy.get("lead_created") == "1",
            lead_url=legacy.get("lead_url"),
            matched_via=legacy.get("matched_via"),
            candidates=tuple(json.loads(candidates)) if candidates else (),
            create_started_at=parse_float(legacy.get("create_started_at")),
            next_attempt_at=parse_float(legacy.get("next_attempt_at")),
            steps=steps,
        )

    @classmethod
    def _from_values(cls, data: Mapping[str, Any]) -> Progress:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if "candidates" in values:
            values["candidates"] = tuple(str(c) for c in values["candidates"] or ())
        for name in ("create_started_at", "next_attempt_at"):
            if name in values:
                values[name] = parse_float(values[name])
        if "steps" in values:
            raw_steps = values["steps"]
            if not isinstance(raw_steps, Mapping):
                raise ValueError("progress.steps is not a JSON object")
            values["steps"] = {str(k): StepMark.from_data(v) for k, v in raw_steps.items()}
        return cls(**values)

    def to_public(self) -> dict[str, Any]:
        """The set fields, as the admin API shows them (times in ISO-8601)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "steps":
                if value:
                    out["steps"] = {name: mark.to_public() for name, mark in value.items()}
                continue
            if value == f.default:
                continue
            if f.name in ("create_started_at", "next_attempt_at"):
                value = iso(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out


_NO_PROGRESS = Progress()
LEGACY_PROGRESS = (
    "lead_created",
    "lead_url",
    "matched_via",
    "candidates",
    "contact_done",
    "contact_added",
    "note_id",
    "create_started_at",
    "next_attempt_at",
)
"""The loose hash fields the previous version kept progress in (read, never written)."""


def parse_float(value: Any) -> float | None:
    """A float from a hash field (None for a missing or empty one)."""
    if value in (None, ""):
        return None
    return float(value)
