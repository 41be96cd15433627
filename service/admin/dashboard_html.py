"""The dashboard's HTML: plain server-rendered pages, every value escaped, no script at all.

Each function returns a fragment or a page as text; ``dashboard.py`` fetches the data and sends
the pages. Buttons are POST forms carrying the session's CSRF token.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

from service.admin.activity import Activity
from service.admin.chart_html import hourly_chart
from service.admin.people import Found
from service.admin.steps_html import owner_cell, steps_table
from service.admin.views import Shown, error_code, error_reason, lead_url
from service.queue.records import FINAL_STATES, STATES, Record
from service.times import iso

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:.6rem 1.2rem;display:flex;gap:1.2rem;
  align-items:center}
header a{color:#fff;text-decoration:none}header .grow{flex:1}
main{padding:1rem 1.2rem;max-width:82rem}
h1{font-size:1.3rem}h2{font-size:1.1rem;margin-top:1.6rem}
table{border-collapse:collapse;background:#fff;width:100%}
th,td{border-bottom:1px solid #e2e5ea;padding:.35rem .5rem;text-align:left;vertical-align:top}
.nowrap,th{white-space:nowrap}.wrap{overflow-wrap:anywhere}
th{background:#eef0f3;font-weight:600}
.cards{display:flex;flex-wrap:wrap;gap:.6rem}
.card{background:#fff;border:1px solid #e2e5ea;border-radius:6px;padding:.5rem .8rem;
  min-width:7rem}
.card b{display:block;font-size:1.4rem}.card a{color:inherit;text-decoration:none}
.state{border-radius:3px;padding:0 .35rem;background:#e2e5ea}
.s-created,.s-attached{background:#cdebd4}.s-dead{background:#f6c9c9}
.s-rejected{background:#f3dfc1}.s-retrying,.s-processing{background:#d8e3f6}
.s-step-done{background:#cdebd4}.s-step-failed{background:#f6c9c9}
.s-step-started{background:#d8e3f6}
.notice{background:#fff7d6;border:1px solid #e8d27a;padding:.5rem .8rem;border-radius:4px}
.error{background:#fde2e2;border:1px solid #e7a1a1;padding:.5rem .8rem;border-radius:4px}
.running{color:#17692d}.paused{color:#a11}
pre{background:#fff;border:1px solid #e2e5ea;padding:.5rem;overflow:auto;max-height:24rem;
  white-space:pre-wrap;word-break:break-word}
form.inline{display:inline}button{cursor:pointer}
.actions{display:flex;gap:2rem;align-items:center;margin:.8rem 0}form.all{margin:.6rem 0}
.muted{color:#6b7280}
header form{display:flex;gap:.3rem}header input{width:18rem}
.code{font:12px ui-monospace,monospace;background:#eef0f3;border-radius:3px;padding:0 .3rem;
  margin-right:.3rem}
.charts{display:flex;flex-wrap:wrap;gap:1.5rem}figure{margin:0}
figcaption{font-weight:600;margin-bottom:.3rem}.chart{background:#fff;border:1px solid #e2e5ea}
.legend{display:flex;flex-wrap:wrap;gap:.8rem;margin:.3rem 0}
.swatch{display:inline-block;width:.8rem;height:.8rem;border-radius:2px;margin-right:.25rem;
  vertical-align:-1px}
"""


def esc(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


def when(ts: float) -> str:
    """A record time for people: ``2024-05-01 12:00:00Z``."""
    return iso(ts).replace("T", " ").split(".")[0] + "Z"


def page(title: str, body: str, *, csrf: str | None = None) -> str:
    """The frame: a header with navigation (and a logout button when logged in)."""
    nav = ""
    if csrf is not None:
        nav = (
            '<a href="/admin">Overview</a><a href="/admin/dead">Dead letters</a>'
            '<form method="get" action="/admin/search" role="search">'
            '<input type="search" name="q" placeholder="email, phone, sub_... or lead_..." '
            'aria-label="Find a person\'s submissions"><button type="submit">Find</button></form>'
            '<span class="grow"></span>'
            f'<form class="inline" method="post" action="/admin/logout">{hidden(csrf)}'
            '<button type="submit">Log out</button></form>'
        )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)} · Lead Intake</title><style>{STYLE}</style></head><body>"
        f"<header><strong>Lead Intake</strong>{nav}</header><main>{body}</main></body></html>"
    )


def hidden(csrf: str) -> str:
    return f'<input type="hidden" name="csrf" value="{esc(csrf)}">'


def login_page(*, error: str | None, next_path: str, configured: bool) -> str:
    if not configured:
        body = (
            "<h1>Admin dashboard</h1><p class='error'>No admin token is configured: set "
            "<code>INTAKE_ADMIN_TOKEN</code> and restart the receiver.</p>"
        )
        return page("Log in", body)
    message = f'<p class="error" role="alert">{esc(error)}</p>' if error else ""
    body = (
        f"<h1>Admin dashboard</h1>{message}"
        '<form method="post" action="/admin/login">'
        f'<input type="hidden" name="next" value="{esc(next_path)}">'
        '<p><label>Admin token <input type="password" name="token" autocomplete="current-password"'
        ' required autofocus size="40"></label></p>'
        '<p><button type="submit">Log in</button></p></form>'
    )
    return page("Log in", body)


def message_page(title: str, text: str, *, csrf: str | None = None) -> str:
    return page(title, f"<h1>{esc(title)}</h1><p class='error'>{esc(text)}</p>", csrf=csrf)


def notice(text: str | None) -> str:
    return f'<p class="notice" role="status">{esc(text)}</p>' if text else ""


def state_badge(state: str) -> str:
    return f'<span class="state s-{esc(state)}">{esc(state)}</span>'


def lead_link(record: Record, view: Shown) -> str:
    url = lead_url(record, view.lead_url)
    if not url:
        return '<span class="muted">—</span>'
    return (
        f'<a class="lead" href="{esc(url)}" target="_blank" rel="noopener noreferrer">'
        f"{esc(record.lead_id or 'lead')}</a>"
    )


def submission_link(record: Record) -> str:
    return f'<a class="sub" href="/admin/submissions/{esc(record.id)}">{esc(record.id)}</a>'


def overview_cards(overview: Mapping[str, Any]) -> str:
    states = overview["states"]
    cards = "".join(
        f'<div class="card"><a href="/admin?state={esc(s)}">{state_badge(s)}'
        f'<b data-state="{esc(s)}">{esc(states.get(s, 0))}</b></a></div>'
        for s in STATES
    )
    queue = overview["queue"]
    depth = "".join(
        f'<div class="card">{esc(label)}<b data-queue="{esc(key)}">{esc(queue[key])}</b></div>'
        for key, label in (
            ("stream_length", "in the stream"),
            ("pending", "being processed"),
            ("retry_scheduled", "waiting to retry"),
            ("dead_letters", "dead letters"),
        )
    )
    delivery = overview["delivery"]
    status = delivery["status"]
    detail = ""
    if delivery["paused_reason"]:
        detail = f" — {esc(delivery['paused_reason'])}"
    slowed = [f"{g} {s:g}s" for g, s in delivery["rate_limit_pauses"].items() if s]
    if slowed:
        detail += f" (Close rate limit: {esc(', '.join(slowed))})"
    css = "running" if status == "running" else "paused"
    flagged = (overview.get("links") or {}).get("flagged", 0)
    depth += (
        f'<div class="card"><a href="/admin/links" id="duplicates">possible duplicates'
        f'<b data-links="flagged">{esc(flagged)}</b></a></div>'
    )
    return (
        f"<h2>Submissions per state</h2><div class='cards'>{cards}</div>"
        f"<h2>Queue</h2><div class='cards'>{depth}</div>"
        f"<p>Delivery to Close: <strong id='delivery' class='{css}'>{esc(status)}</strong>"
        f"{detail}</p>"
    )


def error_cell(record: Record, view: Shown) -> str:
    """The reason code (when the failure carries one) and why, custom fields by name."""
    code = error_code(record)
    reason = view.named(error_reason(record) or "")
    badge = f'<span class="code">{esc(code)}</span>' if code else ""
    return badge + esc(reason) if badge or reason else ""


def submissions_table(
    records: Sequence[Record], view: Shown, *, csrf: str | None = None, back: str = "/admin"
) -> str:
    """Recent submissions; with ``csrf``, a replay button on each row (the dead letters)."""
    if not records:
        return '<p class="muted">No submissions.</p>'
    head = (
        "<tr><th>Received (UTC)</th><th>Submission</th><th>Source</th><th>State</th>"
        "<th>Attempts</th><th>Last error</th><th>Close lead</th>"
        + ("<th></th>" if csrf else "")
        + "</tr>"
    )
    rows = []
    for record in records:
        button = ""
        if csrf:
            button = (
                f'<td><form class="inline" method="post" '
                f'action="/admin/submissions/{esc(record.id)}/replay">{hidden(csrf)}'
                f'<input type="hidden" name="next" value="{esc(back)}">'
                f'<button type="submit" class="replay">Replay</button></form></td>'
            )
        rows.append(
            f'<tr data-id="{esc(record.id)}">'
            f'<td class="nowrap">{esc(when(record.received_at))}</td>'
            f"<td class='nowrap'>{submission_link(record)}</td><td>{esc(record.source)}</td>"
            f"<td>{state_badge(record.state)}</td><td>{esc(record.attempts)}</td>"
            f"<td class='wrap'>{error_cell(record, view)}</td>"
            f"<td class='wrap'>{lead_link(record, view)}</td>"
            f"{button}</tr>"
        )
    return f"<table>{head}{''.join(rows)}</table>"


def overview_page(
    overview: Mapping[str, Any],
    activity: Activity,
    records: Sequence[Record],
    view: Shown,
    *,
    states: Sequence[str],
    more: bool,
    csrf: str,
) -> str:
    which = f" ({esc(', '.join(states))})" if states else ""
    more_note = '<p class="muted">Showing the newest only.</p>' if more else ""
    body = (
        "<h1>Overview</h1>"
        + data_loss_alert(overview)
        + overview_cards(overview)
        + "<h2>Received in the last 24 hours (per hour, UTC)</h2>"
        + hourly_chart(activity)
        + f"<h2>Recent submissions{which}</h2>"
        + (' <p><a href="/admin">show every state</a></p>' if states else "")
        + submissions_table(records, view)
        + more_note
    )
    return page("Overview", body, csrf=csrf)


def data_loss_alert(overview: Mapping[str, Any]) -> str:
    """A red line while Redis's loss of its data is on record."""
    lost_at = (overview.get("redis") or {}).get("data_lost_at")
    if not lost_at:
        return ""
    return (
        f'<p class="error" role="alert" id="data-lost">Redis came back without its data at '
        f"{esc(lost_at)}: submissions accepted before then and not yet delivered are lost. "
        "Redis needs persistence (AOF on).</p>"
    )


def dead_page(
    records: Sequence[Record], view: Shown, *, more: bool, csrf: str, message: str | None
) -> str:
    replay_all = ""
    if records:
        replay_all = (
            f'<form class="all" method="post" action="/admin/dead/replay">{hidden(csrf)}'
            f'<button type="submit" id="replay-all">Replay all {len(records)}'
            f"{'+' if more else ''}</button></form>"
        )
    body = (
        f"<h1>Dead letters</h1>{notice(message)}"
        "<p>Submissions Close refused for good, or whose retries ran out. Fix the cause "
        "(the last error says what Close answered), then replay: the person is looked up "
        "again first, so a replay never makes a second lead.</p>"
        + replay_all
        + submissions_table(records, view, csrf=csrf, back="/admin/dead")
        + ('<p class="muted">Showing the newest 500.</p>' if more else "")
    )
    return page("Dead letters", body, csrf=csrf)


def _json_block(value: Any) -> str:
    return f"<pre>{esc(json.dumps(value, indent=2, ensure_ascii=False, default=str))}</pre>"


def _rows(items: Iterable[tuple[str, str]]) -> str:
    return "".join(f"<tr><th>{esc(k)}</th><td>{v}</td></tr>" for k, v in items)


def submission_page(record: Record, view: Shown, *, csrf: str, message: str | None) -> str:
    public = record.to_public()
    known = {"id", "source", "state", "received_at", "updated_at", "attempts", "lead_id"}
    known |= {"history", "payload", "lead_url", "envelope"}
    facts = [
        ("State", state_badge(record.state)),
        ("Source", esc(record.source)),
        ("Received (UTC)", esc(when(record.received_at))),
        ("Updated (UTC)", esc(when(record.updated_at))),
        ("Attempts", esc(record.attempts)),
        ("Close lead", lead_link(record, view)),
        ("Owner", owner_cell(record, view)),
        ("Last error", error_cell(record, view) or "—"),
    ]
    extra = {k: v for k, v in public.items() if k not in known and k != "steps"}
    actions = []
    if record.state in FINAL_STATES:
        actions.append(
            f'<form class="inline" method="post" action="/admin/submissions/{esc(record.id)}'
            f'/replay">{hidden(csrf)}<button type="submit" class="replay">Replay</button></form>'
        )
    if record.state != "erased":
        actions.append(
            f'<form class="inline" method="post" action="/admin/submissions/{esc(record.id)}'
            f'/erase">{hidden(csrf)}<label><input type="checkbox" name="confirm" value="yes" '
            "required> erase this person's data</label> "
            '<button type="submit" class="erase">Erase</button></form>'
        )
    history = "".join(
        f"<tr><td class='nowrap'>{esc(str(event.get('at')).replace('T', ' '))}</td>"
        f"<td>{state_badge(str(event.get('state')))}</td>"
        f"<td>{_json_block(event['detail']) if event.get('detail') else ''}</td></tr>"
        for event in record.history
    )
    body = (
        f"<h1>Submission <code>{esc(record.id)}</code></h1>{notice(message)}"
        f"<div class='actions'>{''.join(actions)}</div>"
        f"<table>{_rows(facts)}</table>"
        + steps_table(record, view)
        + (
            "<h2>Payload (personal data)</h2>" + _json_block(public["payload"])
            if "payload" in public
            else ""
        )
        + ("<h2>Details</h2>" + _json_block(extra) if extra else "")
        + "<h2>History</h2><table><tr><th>At (UTC)</th><th>State</th><th>Detail</th></tr>"
        + f"{history}</table>"
    )
    return page(f"Submission {record.id}", body, csrf=csrf)


def search_page(
    text: str, found: Found | None, problem: str | None, view: Shown, *, csrf: str
) -> str:
    """A person's submissions (or why the search text cannot be searched)."""
    if problem is not None or found is None:
        body = f"<h1>Find a person</h1><p class='error' role='alert'>{esc(problem)}</p>"
        return page("Find", body, csrf=csrf)
    query = found.query
    count = len(found.records)
    scan = ""
    if found.scan_truncated:
        scan = (
            f'<p class="muted">Submissions no worker has read yet are searched among the newest '
            f"{found.scanned} waiting, retrying or rejected ones; an older one may be missed."
            "</p>"
        )
    body = (
        f"<h1>Submissions of {esc(query.kind)} <code>{esc(query.value)}</code></h1>"
        f'<p id="found">{count} submission{"" if count == 1 else "s"} found.</p>'
        + submissions_table(found.records, view, back="/admin")
        + scan
    )
    return page(f"Find {text}", body, csrf=csrf)
