"""A create whose answer was lost: did it make a lead? Asked of Close's event log first.

A submission marks its record (``create_started_at``) before the create POST. A later attempt
that finds the mark but no lead id (a 5xx after Close applied it, a timeout, a worker killed
after the POST) asks, in this order:

1. The lead cache and Close's search (``lookup.find_lead``, done by the pipeline before it
   gets here). A lead found there is the lost create's own (:meth:`UnknownCreates.own_lead`:
   the submission ends ``created``) when this service's API user made it no earlier than the
   mark less the clock skew and no other submission recorded making it; otherwise it is used
   as any match is.
2. Close's event log (:meth:`UnknownCreates.resolve`): the lead ``created`` events of this
   service's API user (``GET /me/``, read once) from the mark less the clock skew to the mark
   plus the Close timeout, :data:`LATE_APPLY_SECONDS` and the clock skew (the window the lost
   create can have been applied in: a busy organisation's log is not paged back to the mark
   from now), and the contact ``created`` events of the same window for their contacts. A
   lead whose contacts show the person (``lookup.has_person``) is the one the lost create made,
   unless another submission recorded making it (then it is the person's lead, attached to).
   The lead is read by id (``GET /lead/{id}/``, the read-after-write path) before it is used:
   when no event carries its contacts, that read is how the person is checked. An attempt that
   met a match which is not its own create's lead asks the log too (``Pipeline._own_lead``):
   a lead the create made besides is the person's second lead, an identity link.
3. Nothing in the log: once ``event_lag`` seconds have passed since the mark (the log may
   show an event a little late), the create is sent again at once, whatever Close's search
   index lags. Before then the attempt waits (:class:`AwaitingIndex`, until the mark plus the
   lag).

When the event log cannot be read (an error, a refusal, a key without access, more events than
``service/close/events.MAX_PAGES`` pages), the grace period is the fallback, as before: the
attempt waits until the mark plus ``grace`` for the search index, then creates.

The person's other submissions that see another submission's create mark
(``Held.creating_now``; it lasts an hour, or the grace period when longer) ask the same
question for that submission's create (:meth:`UnknownCreates.resolve_other`, from the mark's
time in its record): a lead found is attached to; none, once the event log's lag is over, and
they create (marking in turn); the marking submission then finds the lead in the cache. They
wait while the answer cannot be told yet, as the marking submission does. (Waiting for the
marking submission itself was not enough: a worker killed, a backlog or a busy lock can delay
its next attempt past any mark life.)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from service.close.client import CloseClient
from service.close.events import TooManyEvents, created_since, merged_into
from service.errors import (
    CloseAuthFailed,
    CloseError,
    CloseRateLimited,
    CloseRefused,
    TransientError,
)
from service.mapping import Identity
from service.queue import Queue
from service.worker.lookup import about_missing_lead, created_at, has_person

logger = logging.getLogger(__name__)

MARK_SECONDS = 3600.0
"""How long a create mark lasts at least (its life is the longer of this and the grace
period): the person's other submissions see it until the marking submission resolves, and
resolve it themselves from the marking submission's record when it is slow to."""
OWN_LEAD_FOUND = "lead found: made by this submission's create, its answer lost"
"""The history's step when the cache or the search shows the lead a lost create made."""
LATE_APPLY_SECONDS = 30.0
"""How much later than the Close timeout after its mark a lost create is looked for in the
event log: the pacer's wait before the POST and Close finishing a request the worker stopped
waiting for. A create Close applied later still is not seen, and is made again."""
LEAD_SUBMISSIONS = 20
"""How many of a candidate lead's submissions are read to tell whether another made it."""


class AwaitingIndex(TransientError):
    """An earlier create's outcome is unknown and Close may not show it yet."""

    def __init__(self, message: str, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class Found:
    """The lead Close's event log shows for the person since the create mark."""

    lead: dict[str, Any]
    mine: bool
    """No other submission recorded making it: the lost create made it."""


class UnknownCreates:
    """Resolves a create whose outcome is unknown (see the module docstring)."""

    def __init__(
        self,
        close: CloseClient,
        queue: Queue,
        *,
        grace: float,
        event_lag: float,
        clock_skew: float,
    ) -> None:
        self.close = close
        self.queue = queue
        self.grace = grace
        self.event_lag = event_lag
        self.clock_skew = clock_skew
        self._user_id: str | None = None

    async def user_id(self) -> str:
        """This service's API user (``GET /me/``, read once per process)."""
        if self._user_id is None:
            me = await self.close.me()
            if not me.get("id"):
                raise CloseRefused("GET /me/: no user id in the answer")
            self._user_id = str(me["id"])
        return self._user_id

    async def resolve(
        self, submission: str, identity: Identity, started: float, before: float | None = None
    ) -> Found | None:
        """The lead the create marked at ``started`` made (or the person's lead another
        submission made since), or None when the event log shows none and its lag is over:
        create again. Raises AwaitingIndex while the answer cannot be told yet. ``before``:
        another submission of the person marked a create then (it found this one's create
        made nothing), so a lead made from then on is that one's, not this one's."""
        waited = time.time() - started
        if waited < self.event_lag:  # one look, once the log has had time to show the event
            raise AwaitingIndex(
                "an earlier create may have reached Close; waiting for the event log",
                retry_after=self.event_lag - waited,
            )
        try:
            found = await self._from_log(submission, identity, started, before)
        except CloseRateLimited:
            raise  # a pause, not an answer: retried as any 429
        except (CloseError, TooManyEvents) as exc:
            status = exc.response.status if isinstance(exc, CloseError) and exc.response else 0
            if isinstance(exc, CloseAuthFailed) and status == 401:
                raise  # the key itself is refused: delivery pauses
            if waited >= self.grace:
                logger.info("event log unreadable (%s); the grace period is over", exc)
                return None
            logger.warning("event log unreadable (%s); waiting out the grace period", exc)
            # A transient error may pass soon: look again after the lag; a refusal will not.
            transient = isinstance(exc, TransientError)
            left = self.grace - waited
            raise AwaitingIndex(
                f"an earlier create may have reached Close and the event log cannot be read "
                f"({exc}); waiting for the search index",
                retry_after=min(left, max(self.event_lag, 1.0)) if transient else left,
            ) from None
        return found

    async def own_lead(
        self, submission: str, lead_id: str, started: float, before: float | None = None
    ) -> dict[str, Any] | None:
        """``lead_id`` (the cache's or the search's match) read from Close, when the create
        ``submission`` marked at ``started`` made it (step 1 of the module docstring; ``before``
        as for :meth:`resolve`)."""
        lead = await self._read(lead_id)
        if lead is None or str(lead.get("created_by") or "") != await self.user_id():
            return None
        made = created_at(lead)
        if made < started - self.clock_skew:
            return None  # older than the mark: the person's lead from before
        if before is not None and made >= before:
            return None  # made after another submission's mark: that one's create
        return None if await self._claimed(lead_id, submission) else lead

    async def _from_log(
        self, submission: str, identity: Identity, started: float, before: float | None
    ) -> Found | None:
        user = await self.user_id()
        since = started - self.clock_skew
        until = started + self.close.timeout + LATE_APPLY_SECONDS + self.clock_skew
        if before is not None:
            until = min(until, before)
        leads = await created_since(self.close, user, "lead", since, until)
        if not leads:
            return None
        contacts: dict[str, list[Any]] = {}
        if any(not isinstance((e.get("data") or {}).get("contacts"), list) for e in leads):
            for event in await created_since(self.close, user, "contact", since, until):
                data = event.get("data")
                if isinstance(data, Mapping) and event.get("lead_id"):
                    contacts.setdefault(str(event["lead_id"]), []).append(data)
        mine: list[dict[str, Any]] = []
        others: list[dict[str, Any]] = []
        for event in reversed(leads):  # oldest first: the first lead made after the mark
            lead_id = str(event.get("object_id") or "")
            if not lead_id:
                continue
            data = event.get("data")
            shown = data.get("contacts") if isinstance(data, Mapping) else None
            if not isinstance(shown, list):
                shown = contacts.get(lead_id)
            if shown is not None and not has_person({"contacts": shown}, identity):
                continue
            lead = await self._read(lead_id)  # also the check when no event showed contacts
            if lead is None or not has_person(lead, identity):
                continue
            (others if await self._claimed(lead_id, submission) else mine).append(lead)
            if mine:
                break
        if mine:
            return Found(mine[0], mine=True)
        return Found(others[0], mine=False) if others else None

    async def _read(self, lead_id: str) -> dict[str, Any] | None:
        try:
            return await self.close.get_lead(lead_id)
        except CloseRefused as exc:
            if about_missing_lead(exc):
                return None  # deleted or merged away since
            raise

    async def _claimed(self, lead_id: str, submission: str) -> bool:
        """Another submission recorded making ``lead_id``."""
        ids = await self.queue.index.submissions_of(lead_id=lead_id, limit=LEAD_SUBMISSIONS)
        for other in ids:
            if other == submission:
                continue
            record = await self.queue.records.get(other)
            if record is not None and record.progress.lead_created and record.lead_id == lead_id:
                return True
        return False

    async def merged_into(self, lead_id: str) -> str | None:
        """The lead Close's event log says ``lead_id`` was merged into (None: no merge shown,
        or the log cannot be read: the caller's lead is then gone as before)."""
        try:
            return await merged_into(self.close, lead_id)
        except (CloseRefused, CloseAuthFailed):
            return None

    def later_mark(
        self, creating: tuple[str, float] | None, submission: str, started: float
    ) -> float | None:
        """When another submission of the person marked a create (``creating``: its id and
        the seconds its mark has left) after ``submission``'s mark at ``started`` (it had found
        that create made nothing): the ``before`` of :meth:`resolve`; None when none did."""
        if creating is None or creating[0] == submission:
            return None
        at = time.time() - (self.mark_ttl - creating[1])
        return at if at > started else None

    @property
    def mark_ttl(self) -> float:
        return max(self.grace, MARK_SECONDS)

    async def resolve_other(
        self, submission: str, identity: Identity, other: str, left: float
    ) -> Found | None:
        """Another submission (``other``) of the person marked a create whose outcome is
        unknown, ``left`` seconds before its mark expires. The lead the event log shows that
        create made (``mine`` False: this submission attaches to it), or None when the log
        shows none and its lag is over (this submission creates). Raises AwaitingIndex while
        that cannot be told (the grace period counted from the other's mark when the event
        log cannot be read)."""
        record = await self.queue.records.get(other)
        started = record.progress.create_started_at if record is not None else None
        if started is None:  # its record is gone: when the mark was set, from its life left
            started = time.time() - (self.mark_ttl - left)
        try:
            found = await self.resolve(submission, identity, started)
        except AwaitingIndex as waiting:
            raise AwaitingIndex(
                f"a create for this person by {other} may have reached Close: {waiting}",
                retry_after=waiting.retry_after,
            ) from None
        return Found(found.lead, mine=False) if found is not None else None
