"""Identity links: one submission's email and phone led to two different leads (two of the
person's submissions with disjoint identities were processed at once, and each made a lead).

The lookup finds the link (``lookup.find_lead``: rows showing the email beside rows showing only
the phone, or the lead cache naming two leads for the person's identities); the pipeline keeps it
in the record's progress (``Progress.link``), and :class:`LinkStep`, the first step after the
lead, applies the source's ``dedup.link`` policy:

- ``ignore``: the record's note of it, nothing else;
- ``flag``: kept in Redis as a possible duplicate (``queue/links.py``), listed by the admin API
  (``GET /v1/links?status=flagged``) and the dashboard's possible duplicates page
  (``/admin/links``), counted in ``intake_identity_links_total``;
- ``merge``: Close's ``POST /lead/merge/``, the older lead kept (the destination), when the
  limits allow it (leads this service created, the newer one younger than the window; else the
  pair is flagged). Before it, the locks of every identity of both leads are taken without
  waiting (not free: the submission is retried later), so no other submission works on the lead
  merged away. After it, the merge map and the lead cache point at the kept lead, and the
  submission's remaining steps run there. A merge whose answer was lost is found (``find``):
  one of the two leads gone (404) and the other alive.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from service.errors import CloseRefused
from service.keys import identity_keys as person_keys
from service.metrics import Metrics
from service.queue import Queue
from service.worker.identity import Held, IdentityBusy, IdentityLocks, identity_keys
from service.worker.lookup import Match, about_missing_lead, created_at
from service.worker.steps import Done, Step, StepContext


def link_of(
    match: Match, identities: Sequence[str], cached: Sequence[str], sub_id: str
) -> dict[str, Any] | None:
    """The link a match shows (None without one), as the record and Redis keep it."""
    if match.linked is None or match.linked == match.lead_id:
        return None
    link: dict[str, Any] = {
        "leads": [match.lead_id, match.linked],
        "via": "cache" if match.via == "cache" else "search",
        "submission": sub_id,
    }
    if match.via == "cache":
        link["identities"] = {i: lead for i, lead in zip(identities, cached, strict=False) if lead}
    else:
        emails = [i for i in identities if i.startswith("e:")]
        phones = [i for i in identities if i.startswith("p:")]
        link["identities"] = {
            **dict.fromkeys(emails, match.lead_id),
            **dict.fromkeys(phones, match.linked),
        }
    return link


def lost_create_link(
    own: Mapping[str, Any], match: Match, held: Held, sub_id: str
) -> dict[str, Any]:
    """The link of a submission whose lost create made ``own`` while the person's other
    submission found (and cached) ``match``'s lead: the submission's identities on its own lead
    lead to it, the others to the match."""
    own_id = str(own["id"])
    on_own = lead_identities(own)
    return {
        "leads": [own_id, match.lead_id],
        "via": "event log",
        "submission": sub_id,
        "identities": {i: own_id if i in on_own else match.lead_id for i in held.identities},
    }


def lead_identities(lead: Mapping[str, Any]) -> set[str]:
    """The identity keys of every contact email and phone of ``lead``."""
    out: set[str] = set()
    for contact in lead.get("contacts") or []:
        for item in contact.get("emails") or []:
            if item.get("email"):
                out.update(person_keys(str(item["email"]).lower(), None))
        for item in contact.get("phones") or []:
            if item.get("phone"):
                out.update(person_keys(None, str(item["phone"])))
    return out


class LinkStep(Step):
    """The source's policy for an identity link (see the module docstring)."""

    name = "link"

    def __init__(
        self, queue: Queue, locks: IdentityLocks, *, cache_ttl: int, metrics: Metrics | None
    ) -> None:
        self.queue = queue
        self.links = queue.links
        self.locks = locks
        self.cache_ttl = cache_ttl
        self.metrics = metrics

    def wanted(self, ctx: StepContext) -> bool:
        return bool(ctx.attempt.progress.link)

    def _count(self, ctx: StepContext, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.links.labels(ctx.attempt.record.source, outcome).inc()

    async def _flag(self, ctx: StepContext, link: Mapping[str, Any], reason: str | None) -> Done:
        extra = {"policy": ctx.source.dedup.link, "source": ctx.attempt.record.source}
        if reason:
            extra["reason"] = reason
        if await self.links.record(link, "flagged", **extra):
            self._count(ctx, "flagged")
        detail = {"leads": list(link["leads"]), "status": "flagged", **extra}
        return Done(detail=detail)

    async def run(self, ctx: StepContext) -> Done:
        link = dict(ctx.attempt.progress.link or {})
        policy = ctx.source.dedup.link
        if policy == "ignore":
            self._count(ctx, "ignored")
            detail = {"leads": list(link["leads"]), "policy": "ignore"}
            return Done(skipped="the source ignores identity links", detail=detail)
        if policy == "flag":
            return await self._flag(ctx, link, None)
        first = await self._follow(link["leads"][0])
        second = await self._follow(link["leads"][1])
        if first == second:
            self._switch(ctx, first)
            return Done(close_id=first, skipped="the two leads were merged already")
        refusal = await self._not_ours(ctx, (first, second))
        if refusal:
            return await self._flag(ctx, link, refusal)
        leads, gone = await self._read(ctx, (first, second))
        if ctx.lead_id in gone:
            # Merged into the other by a submission of the person that has not recorded it yet
            # (its answer lost, or its worker between Close's answer and Redis).
            found = await self._merged_already(ctx, link, leads, gone)
            if found is None:
                raise gone[ctx.lead_id]  # both gone
            return found
        if gone:
            detail = {"gone": next(iter(gone))}
            return Done(skipped="the other lead no longer exists", detail=detail)
        older, newer = sorted(leads, key=lambda i: (created_at(leads[i]), i))
        window = ctx.source.dedup.merge_window_seconds
        if time.time() - created_at(leads[newer]) > window:
            return await self._flag(ctx, link, f"the newer lead is older than {window} s")
        identities = set(identity_keys(ctx.mapped.identity))
        every = identities | lead_identities(leads[older]) | lead_identities(leads[newer])
        extra = sorted(every - identities)
        token = await self.locks.try_take(extra) if extra else ""
        if token is None:
            raise IdentityBusy("a submission of the other lead's person is being processed")
        try:
            await ctx.close.merge_leads(newer, older)
            return await self._merged(ctx, link, newer, older, every)
        finally:
            if extra and token:
                await self.locks.release([self.locks.keys.lock(i) for i in extra], token)

    async def find(self, ctx: StepContext) -> Done | None:
        link = ctx.attempt.progress.link or {}
        if ctx.source.dedup.link != "merge" or not link:
            return None
        leads, gone = await self._read(ctx, link["leads"])
        return await self._merged_already(ctx, link, leads, gone)

    @staticmethod
    async def _read(
        ctx: StepContext, lead_ids: Sequence[str]
    ) -> tuple[dict[str, dict[str, Any]], dict[str, CloseRefused]]:
        """The leads Close still has, and Close's answer for each one it does not."""
        leads: dict[str, dict[str, Any]] = {}
        gone: dict[str, CloseRefused] = {}
        for lead_id in lead_ids:
            try:
                leads[lead_id] = await ctx.close.get_lead(lead_id)
            except CloseRefused as exc:
                if not about_missing_lead(exc):
                    raise
                gone[lead_id] = exc
        return leads, gone

    async def _merged_already(
        self,
        ctx: StepContext,
        link: Mapping[str, Any],
        leads: Mapping[str, dict[str, Any]],
        gone: Mapping[str, CloseRefused],
    ) -> Done | None:
        """One of the pair gone and the other alive: it was merged into the other (a lost
        answer, this submission's or another's); record it. None otherwise."""
        if len(leads) != 1 or len(gone) != 1:
            return None  # both alive: not merged (or both gone: nothing to find)
        [(kept, body)] = leads.items()
        every = set(identity_keys(ctx.mapped.identity)) | lead_identities(body)
        return await self._merged(ctx, link, next(iter(gone)), kept, every)

    async def _merged(
        self, ctx: StepContext, link: Mapping[str, Any], source: str, kept: str, every: set[str]
    ) -> Done:
        await self.links.merged(source, kept, sorted(every), cache_ttl=self.cache_ttl)
        extra = {"policy": "merge", "source": ctx.attempt.record.source, "kept": kept}
        if await self.links.record(link, "merged", merged=source, **extra):
            self._count(ctx, "merged")
        self._switch(ctx, kept)
        return Done(close_id=kept, detail={"kept": kept, "merged": source, "status": "merged"})

    async def _follow(self, lead_id: str) -> str:
        return await self.links.follow(lead_id) or lead_id

    def _switch(self, ctx: StepContext, kept: str) -> None:
        """The submission's remaining steps run on the kept lead."""
        if ctx.lead_id != kept:
            ctx.attempt.defer(
                {"step": "lead merged", "from": ctx.lead_id, "to": kept}, lead_id=kept
            )
            ctx.lead_id, ctx.lead, ctx.found = kept, None, None

    async def _not_ours(self, ctx: StepContext, leads: Sequence[str]) -> str | None:
        """Why the limits refuse to merge these leads (None: they allow it)."""
        if not ctx.source.dedup.merge_created_here_only:
            return None
        for lead_id in leads:
            if not await self._made_here(lead_id):
                return f"lead {lead_id} was not created by this service"
        return None

    async def _made_here(self, lead_id: str) -> bool:
        """Whether one of the records that found or made ``lead_id`` made it."""
        redis, keys = self.queue.redis, self.queue.keys
        for sub_id in await redis.zrange(keys.lead_submissions(lead_id), 0, -1):
            record = await self.queue.records.get(str(sub_id))
            if record is not None and record.lead_id == lead_id and record.progress.lead_created:
                return True
        return False
