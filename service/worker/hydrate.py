"""The hydrate step: before mapping, fetch the person a thin payload names from the provider.

A source with a ``hydrate`` block (``config/hydration.py``) receives payloads that carry only
ids (Meta Lead Ads' ``leadgen_id``, HubSpot's ``objectId``, a Calendly routing form's
``submitter``). This step fetches the person with the source's token and records what came
back in the submission (``Record.fetched``, in the same step as the history event ``fetched``),
so a retry, and a replay, map the same data without asking again (the provider may have deleted
it since). Mapping then reads it as ``fetched``.

How a fetch ends, for the submission:

- fetched: the envelope, with ``fetched`` set, goes on to mapping;
- the payload names no id: mapped as it is (``when_id_missing: map``) or ``rejected``
  (``no-person``);
- the provider refuses the token (expired, revoked, missing permission), or the token cannot
  be read: the source's delivery pauses for every worker (``providers/pauses.py``; readiness
  and ``intake_delivery_paused{reason="hydration:<source>"}`` say so). Its submissions wait on
  the schedule without using up attempts; one of them tries again every
  ``INTAKE_HYDRATION_PROBE_SECONDS``, and the first success reopens the source;
- the provider's rate limit (an error, or usage headers near the limit): the source's fetches
  pause for what the provider asks, its submissions wait (no attempt used);
- the person is not there: tried again (``INTAKE_HYDRATION_NOT_FOUND_RETRIES``), then ``dead``
  (``not-found``, replayable); refused for good (``fetch-refused``): ``dead``;
- anything else transient (timeouts, 5xx after the in-request retries): the retry schedule.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from pydantic import SecretStr

from service.config.hydration import HydrateSpec
from service.config.sources import Sources
from service.envelope import Envelope
from service.errors import (
    FetchAuthFailed,
    FetchError,
    FetchNotFound,
    FetchRateLimited,
    FetchRefused,
    FetchUnavailable,
)
from service.mapping import Mapper
from service.mapping.engine import root_document
from service.mapping.jmes import compile_expression, evaluator
from service.mapping.template import id_text
from service.providers import ProviderClients, ProviderPauses
from service.queue import Entry, Queue, Transition
from service.worker.outcomes import Attempt, Outcomes

logger = logging.getLogger(__name__)

Hydrate = Callable[[Entry, Attempt, Envelope], Awaitable[Envelope | str]]
"""The step as the pipeline calls it: the envelope to map, or the state the attempt ended in."""


def _account_reader(spec: HydrateSpec) -> Any:
    if spec.account is None:
        return None
    compiled, _ = compile_expression(spec.account)
    return evaluator(compiled) if compiled is not None else None


class Hydrator:
    """The hydrate step of the pipeline: ``await hydrator(entry, attempt, envelope)`` is the
    envelope to map, or the state the attempt ended in."""

    def __init__(
        self,
        queue: Queue,
        *,
        sources: Sources,
        mappers: Mapping[str, Mapper],
        clients: ProviderClients,
        pauses: ProviderPauses,
        outcomes: Outcomes,
        not_found_retries: int,
        probe_seconds: float,
        fallback_token: SecretStr | None = None,
    ) -> None:
        self.queue = queue
        self.sources = sources
        self.mappers = mappers
        self.clients = clients
        self.pauses = pauses
        self.outcomes = outcomes
        self.not_found_retries = not_found_retries
        self.probe_seconds = probe_seconds
        self.fallback_token = fallback_token
        self._accounts = {
            name: _account_reader(source.hydrate)
            for name, source in sources.items()
            if source.hydrate is not None
        }

    async def __call__(self, entry: Entry, attempt: Attempt, envelope: Envelope) -> Envelope | str:
        record = attempt.record
        source = self.sources.get(record.source)
        spec = source.hydrate if source is not None else None
        mapper = self.mappers.get(record.source)
        if spec is None or mapper is None:
            return envelope  # nothing to fetch (a thin payload is rejected by mapping: ids-only)
        if isinstance(record.fetched, dict) and "body" in record.fetched:
            return dataclasses.replace(envelope, fetched=record.fetched["body"])
        thin_id = mapper.fetch_id(envelope)
        if thin_id is None:
            if spec.when_id_missing == "map":
                return envelope
            detail = {
                "code": "no-person",
                "reason": f"the {spec.title} payload names no person to fetch "
                f"({mapper.template.fetch_id.text if mapper.template.fetch_id else 'id'} "
                "is empty)",
            }
            return await self.outcomes.end(entry, attempt, "rejected", detail)
        return await self._fetch(entry, attempt, envelope, spec, thin_id)

    async def _fetch(
        self, entry: Entry, attempt: Attempt, envelope: Envelope, spec: HydrateSpec, thin_id: str
    ) -> Envelope | str:
        name = attempt.record.source
        paused = await self.pauses.auth_problem(name)
        if paused and not await self.pauses.take_probe(name, self.probe_seconds):
            return await self._wait_paused(entry, attempt, paused)
        wait = await self.pauses.rate_wait(name)
        if wait > 0:
            detail = {"reason": f"{spec.title}'s rate limit: fetches paused", "wait_seconds": wait}
            return await self.outcomes.wait(entry, attempt, detail, time.time() + wait)
        account = self._account(name, envelope)
        token = spec.token_for(account) or self.fallback_token
        try:
            if token is None:
                raise FetchAuthFailed(
                    f"{spec.title}: no readable token for account {account or '-'} (set the "
                    "source's hydrate token and restart)",
                    provider=spec.provider,
                )
            fetched = await self.clients.fetch(spec, thin_id, token)
        except FetchAuthFailed as exc:
            logger.error(
                "source %s: %s; delivery paused until a fetch succeeds. Nothing is dropped "
                "meanwhile.",
                name,
                exc,
            )
            await self.pauses.auth_failed(name, str(exc))
            return await self._wait_paused(entry, attempt, str(exc))
        except FetchRateLimited as exc:
            await self.pauses.pause_fetches(name, exc.retry_after)
            detail = {**exc.as_detail(), "reason": f"{spec.title}'s rate limit: fetches paused"}
            return await self.outcomes.wait(entry, attempt, detail, time.time() + exc.retry_after)
        except FetchRefused as exc:
            return await self._dead(entry, attempt, exc)
        except FetchUnavailable as exc:
            if isinstance(exc, FetchNotFound) and attempt.record.attempts > self.not_found_retries:
                refused = FetchRefused(
                    f"{exc} (after {attempt.record.attempts} attempts)",
                    provider=exc.provider,
                    code="not-found",
                    status=exc.status,
                    body=exc.body,
                )
                return await self._dead(entry, attempt, refused)
            return await self.outcomes.schedule_retry(entry, attempt, exc)
        if paused and await self.pauses.auth_ok(name):
            logger.warning(
                "source %s: %s accepts the token again: delivery resumed", name, spec.title
            )
        if fetched.pause > 0:
            await self.pauses.pause_fetches(name, fetched.pause)
        await self.queue.steps.apply(
            Transition(
                attempt.record.id,
                "processing",
                source=name,
                detail={"step": "fetched", "provider": spec.provider, "request": fetched.request},
                progress=attempt.progress,
                fetched=fetched.to_record(),
            )
        )
        return dataclasses.replace(envelope, fetched=fetched.body)

    def _account(self, name: str, envelope: Envelope) -> str | None:
        return id_text(self._accounts.get(name), root_document(envelope))

    async def _wait_paused(self, entry: Entry, attempt: Attempt, why: str) -> str:
        detail = {"reason": f"hydration paused: {why}"}
        return await self.outcomes.wait(entry, attempt, detail, time.time() + self.probe_seconds)

    async def _dead(self, entry: Entry, attempt: Attempt, exc: FetchError) -> str:
        detail = exc.as_detail()
        return await self.outcomes.end(
            entry, attempt, "dead", detail, last_error=detail, close_response=None
        )
