"""The chaos run's books of the notes: every note in Close carries the marker of the submission
that posted it (``Lead Intake submission <id>``), so they are counted per submission. A
submission ending created or attached with its note step done has exactly one note, on its
lead, and it is the one its record names (none posted twice after a lost answer or a worker
killed between Close's answer and the record); no note carries the id of a submission that did
not get one (dead, skipped, rejected, or its note step not done)."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from service.mapping.note import MARKER_PREFIX
from tests.reliability.followup_books import Submission

_MARKER = re.compile(re.escape(MARKER_PREFIX) + r"(sub_[0-9A-Za-z]+)")


def note_owner(note: dict[str, Any]) -> str | None:
    """The submission id the note's marker names (None: a note without one)."""
    found = _MARKER.findall(str(note.get("note") or ""))
    return found[-1] if found else None


def check_notes(
    submissions: Iterable[Submission],
    notes: list[dict[str, Any]],
    follow: Callable[[str], str] = str,
) -> tuple[list[str], dict[str, int]]:
    """The failures found, and the counts for the run's table. ``follow`` gives the lead a
    lead id is now (the one Close merged it into, when it was merged)."""
    fail: list[str] = []
    by_id: dict[str, list[dict[str, Any]]] = defaultdict(list)
    unmarked = []
    for note in notes:
        owner = note_owner(note)
        if owner is None:
            unmarked.append(note["id"])
        else:
            by_id[owner].append(note)
    if unmarked:
        fail.append(f"{len(unmarked)} notes without a submission's marker: {unmarked[:3]}")
    per_sub = Counter({sub_id: len(found) for sub_id, found in by_id.items()})
    doubled = sorted(sub_id for sub_id, count in per_sub.items() if count > 1)
    if doubled:
        fail.append(f"{len(doubled)} submissions with more than one note: {doubled[:5]}")
    should = set()
    wrong = []
    for s in submissions:
        record = s.record
        mark = record.progress.steps.get("note")
        if record.state not in ("created", "attached") or mark is None or mark.state != "done":
            continue
        should.add(record.id)
        found = by_id.get(record.id, [])
        if not found:
            fail.append(f"{record.id}: note step done ({mark.close_id}), no note carries its id")
        elif mark.close_id not in {n["id"] for n in found}:
            wrong.append(record.id)
        elif any(follow(str(n.get("lead_id"))) != follow(record.lead_id or "") for n in found):
            fail.append(f"{record.id}: its note is not on its lead {record.lead_id}")
    if wrong:
        fail.append(f"{len(wrong)} records naming a note that is not theirs: {wrong[:5]}")
    strays = sorted(set(by_id) - should)
    if strays:
        fail.append(f"{len(strays)} notes of submissions that should have none: {strays[:5]}")
    counts = {
        "notes": len(notes),
        "double notes": sum(count - 1 for count in per_sub.values() if count > 1),
    }
    return fail, counts
