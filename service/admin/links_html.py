"""The dashboard's possible duplicates page (``/admin/links``): the flagged identity links.

A flagged link is a pair of leads one person's email and phone led to (two of the person's
submissions with disjoint identities each made a lead) that the service kept apart: the source's
``dedup.link`` is ``flag``, or a merge was refused (the reason says why). Each row links both
leads to Close, where a person can merge them, and the submission that found the pair to its
own page. Like every page here: every value escaped, no script.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from service.admin.dashboard_html import esc, page, when


def close_lead(lead_id: object, template: str) -> str:
    """A lead id as a link to its page in Close."""
    url = template.format(lead_id)
    return (
        f'<a class="lead" href="{esc(url)}" target="_blank" rel="noopener noreferrer">'
        f"{esc(lead_id)}</a>"
    )


def _submission(sub_id: object) -> str:
    if not sub_id:
        return '<span class="muted">—</span>'
    href = f"/admin/submissions/{quote(str(sub_id), safe='')}"
    return f'<a class="sub" href="{esc(href)}">{esc(sub_id)}</a>'


def _row(link: Mapping[str, Any], template: str) -> str:
    leads = " and ".join(close_lead(lead, template) for lead in link.get("leads") or [])
    reason = link.get("reason")
    why = esc(reason) if reason else '<span class="muted">the source flags links</span>'
    return (
        f'<tr class="link" data-leads="{esc("|".join(map(str, link.get("leads") or [])))}">'
        f'<td class="nowrap">{esc(when(float(link.get("at") or 0)))}</td>'
        f"<td class='wrap'>{leads}</td><td>{esc(link.get('source'))}</td>"
        f"<td class='nowrap'>{_submission(link.get('submission'))}</td>"
        f"<td class='wrap'>{why}</td><td>{esc(link.get('via'))}</td></tr>"
    )


def links_page(
    links: Sequence[Mapping[str, Any]],
    template: str,
    *,
    next_before: float | None,
    first: bool,
    csrf: str,
) -> str:
    """The flagged links, newest first; ``next_before``: the cursor of the next page, if any."""
    intro = (
        "<p>Pairs of leads one person's email and phone led to, kept apart: the source's "
        "<code>dedup.link</code> is <code>flag</code>, or a merge was refused (the reason says "
        "why). Open both in Close and merge them there if they are one person.</p>"
    )
    if links:
        head = (
            "<tr><th>First seen (UTC)</th><th>Close leads</th><th>Source</th>"
            "<th>Submission</th><th>Reason</th><th>Found by</th></tr>"
        )
        table = f"<table>{head}{''.join(_row(link, template) for link in links)}</table>"
    else:
        table = '<p class="muted" id="no-links">No possible duplicates.</p>'
    paging = []
    if not first:
        paging.append('<a href="/admin/links">Newest</a>')
    if next_before is not None:
        paging.append(f'<a id="older" href="/admin/links?before={next_before!r}">Older</a>')
    nav = f"<p>{' · '.join(paging)}</p>" if paging else ""
    body = f"<h1>Possible duplicates</h1>{intro}{table}{nav}"
    return page("Possible duplicates", body, csrf=csrf)
