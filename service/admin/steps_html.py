"""The steps after the lead on a submission's page: the owner, and one row per step (contact,
note, task, sequence, update, opportunity, custom activity...) with its state, the Close id of
what it made or found, and why it was skipped or what Close answered when it failed."""

from __future__ import annotations

import json
from html import escape
from typing import Any

from service.admin.views import Shown, owner_of
from service.queue.progress import StepMark
from service.queue.records import Record
from service.times import iso


def _esc(value: object) -> str:
    return escape(str(value), quote=True)


def person(user_id: str | None, view: Shown) -> str:
    """A Close user as people know them: their name (as the workers last read it), and the id."""
    if not user_id:
        return '<span class="muted">—</span>'
    name = view.field_names.get(user_id)
    shown = f"{_esc(name)} " if name else ""
    return f'{shown}<code class="user">{_esc(user_id)}</code>'


def owner_cell(record: Record, view: Shown) -> str:
    mark = record.progress.steps.get("owner")
    if mark is None:
        return '<span class="muted">—</span>'
    if mark.state != "done":
        return f'<span class="muted">none: {_esc(mark.reason or mark.state)}</span>'
    how = mark.detail.get("how")
    return person(owner_of(record), view) + (
        f' <span class="muted">({_esc(how)})</span>' if how else ""
    )


def _outcome(mark: StepMark, view: Shown) -> str:
    parts = []
    if mark.reason:
        parts.append(_esc(view.named(mark.reason)))
    if mark.error:
        parts.append(f"<pre>{_esc(view.named(json.dumps(mark.error, ensure_ascii=False)))}</pre>")
    detail: dict[str, Any] = dict(mark.detail)
    if detail:
        text = json.dumps(detail, indent=1, ensure_ascii=False, default=str)
        parts.append(f"<pre>{_esc(view.named(text))}</pre>")
    return "".join(parts)


def steps_table(record: Record, view: Shown) -> str:
    steps = record.progress.steps
    if not steps:
        return ""
    rows = "".join(
        f'<tr data-step="{_esc(name)}"><td class="nowrap">{_esc(name)}</td>'
        f'<td><span class="state s-step-{_esc(mark.state)}">{_esc(mark.state)}</span></td>'
        f'<td class="wrap">{_esc(mark.close_id) if mark.close_id else ""}</td>'
        f'<td class="nowrap">{_esc(iso(mark.at).replace("T", " "))}</td>'
        f"<td>{_outcome(mark, view)}</td></tr>"
        for name, mark in steps.items()
    )
    return (
        "<h2>Steps after the lead</h2><table><tr><th>Step</th><th>State</th><th>Close id</th>"
        f"<th>At (UTC)</th><th>Why / what</th></tr>{rows}</table>"
    )
