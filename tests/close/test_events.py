"""Reading Close's event log (``service/close/events.py``) against the emulator: the lead a
merged-away lead went into, from its ``deleted`` event; none for a lead deleted otherwise or
never merged; and what a key without access to the log gets."""

from __future__ import annotations

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from close_emulator.merge import merge_leads
from service.close.client import CloseClient
from service.close.events import merged_into
from service.errors import CloseAuthFailed
from service.queue import Queue
from service.worker.unknown import UnknownCreates
from tests.conftest import emulator_client, emulator_state


async def _lead(close: CloseClient, email: str) -> str:
    lead = await close.create_lead({"name": email, "contacts": [{"emails": [{"email": email}]}]})
    return str(lead["id"])


async def test_a_merged_lead_names_the_lead_it_went_into(emulator: TestServer) -> None:
    state = emulator_state(emulator)
    async with ClientSession() as http:
        close = emulator_client(http, emulator)
        kept, merged, other = [await _lead(close, f"p{n}@example.com") for n in range(3)]
        merge_leads(merged, kept, state)
        state.delete_lead(other)  # gone without a merge: no event of ours says where
        assert await merged_into(close, merged) == kept
        assert await merged_into(close, kept) is None
        assert await merged_into(close, other) is None


async def test_a_key_without_access_to_the_log_gets_no_answer_not_an_error(
    emulator: TestServer, queue: Queue
) -> None:
    # The worker then treats the lead as gone, as before it asked the log.
    state = emulator_state(emulator)
    async with ClientSession() as http:
        close = emulator_client(http, emulator)
        kept, merged = [await _lead(close, f"p{n}@example.com") for n in range(2)]
        merge_leads(merged, kept, state)
        state.configure(event_log_access="forbid")
        with pytest.raises(CloseAuthFailed):
            await merged_into(close, merged)
        unknown = UnknownCreates(close, queue, grace=1.0, event_lag=0.0, clock_skew=0.0)
        assert await unknown.merged_into(merged) is None
        state.configure(event_log_access="allow")
        assert await unknown.merged_into(merged) == kept
