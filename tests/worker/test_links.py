"""Identity links: two of a person's submissions with disjoint identities made a lead each
(email 1 with phone 2, email 2 with phone 1); a third, email 1 with phone 1, leads to both, and
the source's ``dedup.link`` says what happens: merged (the older kept), flagged, or ignored."""

from __future__ import annotations

import asyncio
import copy
import time
from pathlib import Path
from typing import Any

import yaml
from aiohttp.test_utils import TestServer
from redis.asyncio import Redis

from close_emulator.merge import merge_leads
from service.config.settings import Settings
from service.config.sources import Sources
from service.keys import Keys
from service.mapping.note import has_marker
from service.metrics import Metrics
from service.queue import Queue
from service.queue.records import Record
from service.worker.links import lead_identities
from tests.conftest import (
    emulator_state,
    enqueue,
    lead_posts,
    running_worker,
    sources_from,
    wait_for_record,
    wait_until,
)

MERGE = "/api/v1/lead/merge/"
HELD = {"retry_base_seconds": 3600.0, "retry_max_seconds": 3600.0}
"""Settings whose retries wait (up to) an hour: a test that must act while a submission waits
makes its retry due itself (:func:`retry_now`). A short backoff's full jitter can make a retry
nearly immediate, and it then ran before the test had acted."""


async def retry_now(redis: Redis, keys: Keys) -> None:
    """Every scheduled retry due now (there is exactly one)."""
    scheduled: Any = await redis.zrange(keys.retry, 0, -1)
    assert len(scheduled) == 1
    await redis.zadd(keys.retry, {scheduled[0]: time.time()})


SOURCES = yaml.safe_load((Path(__file__).parents[1] / "sources.yaml").read_text())

E1, E2 = "mia@example.com", "mia.work@example.com"
P1, P2 = "+14155550101", "+14155550102"


def with_link(policy: str, **limits: Any) -> Sources:
    data: dict[str, Any] = copy.deepcopy(SOURCES)
    data["sources"]["partner"]["dedup"] = {"link": policy, **limits}
    return sources_from(data)


def body(email: str, phone: str, note: str) -> dict[str, Any]:
    return {"contact": {"email": email, "phone": phone, "name": "Mia Lind"}, "notes": note}


async def two_leads(
    queue: Queue, settings: Settings, sources: Sources, redis: Redis
) -> tuple[Record, Record]:
    """Lead A made for email 1 + phone 2, then lead B for email 2 + phone 1."""
    async with running_worker(settings, sources, redis):
        first = await enqueue(queue, body(E1, P2, "first"))
        a = await wait_for_record(queue, first, ("created",))
        second = await enqueue(queue, body(E2, P1, "second"))
        b = await wait_for_record(queue, second, ("created",))
    assert a.lead_id and b.lead_id and a.lead_id != b.lead_id
    return a, b


async def third_submission(
    queue: Queue,
    settings: Settings,
    sources: Sources,
    redis: Redis,
    ends: tuple[str, ...] = ("attached",),
    **worker: Any,
) -> Record:
    """Email 1 + phone 1, the submission that meets both leads, processed to one of ``ends``."""
    async with running_worker(settings, sources, redis, **worker):
        third = await enqueue(queue, body(E1, P1, "third"))
        return await wait_for_record(queue, third, ends, within=15)


def merge_posts(emulator: TestServer) -> int:
    return sum(
        1 for r in emulator_state(emulator).requests if r.method == "POST" and r.path == MERGE
    )


def note_texts(emulator: TestServer, lead_id: str) -> list[str]:
    return sorted(str(n.get("note", "")) for n in emulator_state(emulator).notes_for(lead_id))


async def test_merge_keeps_the_older_lead_with_both_contacts_and_every_note(
    queue: Queue, settings: Settings, redis: Redis, emulator: TestServer
) -> None:
    sources = with_link("merge")
    metrics = Metrics()
    state = emulator_state(emulator)
    a, b = await two_leads(queue, settings, sources, redis)
    async with running_worker(settings, sources, redis, metrics=metrics):
        third = await enqueue(queue, body(E1, P1, "third"))
        linked = await wait_for_record(queue, third, ("attached",))
        fourth = await enqueue(queue, {"contact": {"email": E2}, "notes": "fourth"})
        later = await wait_for_record(queue, fourth, ("attached",))
    assert linked.lead_id == a.lead_id and later.lead_id == a.lead_id
    assert state.live_object("lead", str(b.lead_id)) is None
    assert [lead["id"] for lead in state.leads_with_email(E1)] == [a.lead_id]
    assert [lead["id"] for lead in state.leads_with_email(E2)] == [a.lead_id]
    assert [lead["id"] for lead in state.leads_with_phone(P1)] == [a.lead_id]
    texts = " ".join(note_texts(emulator, str(a.lead_id)))
    for word in ("first", "second", "third", "fourth"):
        assert word in texts
    mark = linked.progress.steps["link"]
    assert mark.state == "done" and mark.close_id == a.lead_id
    assert merge_posts(emulator) == 1
    [link] = await queue.links.listing()
    assert link["status"] == "merged" and link["kept"] == a.lead_id
    assert link["merged"] == b.lead_id
    assert metrics.links.labels("partner", "merged")._value.get() == 1


async def test_flag_keeps_both_leads_and_lists_the_link(
    queue: Queue, settings: Settings, redis: Redis, emulator: TestServer
) -> None:
    sources = with_link("flag")
    metrics = Metrics()
    state = emulator_state(emulator)
    a, b = await two_leads(queue, settings, sources, redis)
    linked = await third_submission(queue, settings, sources, redis, metrics=metrics)
    assert linked.lead_id in (a.lead_id, b.lead_id)
    assert state.live_object("lead", str(a.lead_id)) is not None
    assert state.live_object("lead", str(b.lead_id)) is not None
    assert merge_posts(emulator) == 0
    [link] = await queue.links.listing()
    assert link["status"] == "flagged" and sorted(link["leads"]) == sorted(
        [str(a.lead_id), str(b.lead_id)]
    )
    assert await queue.links.listing("merged") == []
    assert metrics.links.labels("partner", "flagged")._value.get() == 1
    assert linked.progress.link is not None


async def test_ignore_only_notes_the_link_in_the_record(
    queue: Queue, settings: Settings, redis: Redis, emulator: TestServer
) -> None:
    sources = with_link("ignore")
    state = emulator_state(emulator)
    a, b = await two_leads(queue, settings, sources, redis)
    linked = await third_submission(queue, settings, sources, redis)
    assert state.live_object("lead", str(a.lead_id)) is not None
    assert state.live_object("lead", str(b.lead_id)) is not None
    assert merge_posts(emulator) == 0
    assert await queue.links.listing() == []
    assert linked.progress.link is not None
    assert sorted(linked.progress.link["leads"]) == sorted([str(a.lead_id), str(b.lead_id)])
    assert linked.progress.steps["link"].state in ("done", "skipped")


async def test_a_lost_merge_answer_merges_once_and_is_found_on_the_retry(
    queue: Queue, settings: Settings, redis: Redis, emulator: TestServer
) -> None:
    sources = with_link("merge")
    state = emulator_state(emulator)
    a, b = await two_leads(queue, settings, sources, redis)
    state.add_fault(method="POST", path=MERGE, status=502, after_apply=True)
    linked = await third_submission(queue, settings, sources, redis)
    assert merge_posts(emulator) == 1
    assert linked.lead_id == a.lead_id
    assert state.live_object("lead", str(b.lead_id)) is None
    mark = linked.progress.steps["link"]
    assert mark.state == "done" and mark.detail["how"] == "found after a lost answer"
    steps = [e["detail"].get("step") for e in linked.history if e.get("detail")]
    assert "link started" in steps
    [link] = await queue.links.listing()
    assert link["status"] == "merged" and link["kept"] == a.lead_id


async def test_a_submission_whose_created_lead_is_merged_away_while_retrying_ends_on_the_kept(
    queue: Queue, make_settings: Any, redis: Redis, keys: Keys, emulator: TestServer
) -> None:
    sources = with_link("merge")
    state = emulator_state(emulator)
    # B's retry waits until another submission has merged the lead in between.
    async with running_worker(make_settings(**HELD), sources, redis):
        first = await enqueue(queue, body(E1, P2, "first"))
        a = await wait_for_record(queue, first, ("created",))
        # Lead B is created, then its note fails before Close applies it: B's submission waits.
        state.add_fault(method="POST", path="/api/v1/activity/note/", status=503, count=1)
        second = await enqueue(queue, body(E2, P1, "second"))
        waiting = await wait_for_record(queue, second, ("retrying",))
        b_lead = waiting.lead_id
        assert b_lead and b_lead != a.lead_id and waiting.progress.lead_created
        third = await enqueue(queue, body(E1, P1, "third"))
        linked = await wait_for_record(queue, third, ("attached",))
        assert state.live_object("lead", str(b_lead)) is None  # merged while B's one waits
        await retry_now(redis, keys)
        after = await wait_for_record(queue, second, ("created", "attached", "dead"), within=15)
    assert linked.lead_id == a.lead_id
    assert after.state in ("created", "attached") and after.lead_id == a.lead_id
    assert "second" in " ".join(note_texts(emulator, str(a.lead_id)))
    steps = [e["detail"].get("step") for e in after.history if e.get("detail")]
    assert "lead merged" in steps


async def test_a_link_found_by_search_is_flagged_when_the_cache_forgot_both_leads(
    queue: Queue, settings: Settings, redis: Redis, emulator: TestServer, keys: Any
) -> None:
    sources = with_link("flag")
    a, b = await two_leads(queue, settings, sources, redis)
    cached = [k async for k in redis.scan_iter(match=keys.lead("*"))]
    assert cached
    await redis.delete(*cached)
    linked = await third_submission(queue, settings, sources, redis)
    # The email's lead is the match; the rows showing only the phone are the other lead.
    assert linked.lead_id == a.lead_id and linked.progress.matched_via == "search:email"
    assert linked.progress.link is not None and linked.progress.link["via"] == "search"
    assert linked.progress.link["leads"] == [a.lead_id, b.lead_id]
    [link] = await queue.links.listing("flagged")
    assert link["submission"] == linked.id


async def test_a_merge_the_window_refuses_is_flagged_with_the_reason(
    queue: Queue, settings: Settings, redis: Redis, emulator: TestServer
) -> None:
    sources = with_link("merge", merge_window_seconds=0)
    state = emulator_state(emulator)
    _, b = await two_leads(queue, settings, sources, redis)
    async with running_worker(settings, sources, redis):
        third = await enqueue(queue, body(E1, P1, "third"))
        await wait_for_record(queue, third, ("attached",))
    assert merge_posts(emulator) == 0
    assert state.live_object("lead", str(b.lead_id)) is not None
    [link] = await queue.links.listing()
    assert link["status"] == "flagged" and link["policy"] == "merge"
    assert "older than 0 s" in link["reason"]


async def test_a_lead_this_service_did_not_create_is_flagged_not_merged(
    queue: Queue, settings: Settings, redis: Redis, emulator: TestServer, keys: Any
) -> None:
    sources = with_link("merge")
    state = emulator_state(emulator)
    _, b = await two_leads(queue, settings, sources, redis)
    await redis.delete(keys.sub(b.id))  # no record made lead B: as if a rep had made it
    async with running_worker(settings, sources, redis):
        third = await enqueue(queue, body(E1, P1, "third"))
        await wait_for_record(queue, third, ("attached",))
    assert merge_posts(emulator) == 0
    assert state.live_object("lead", str(b.lead_id)) is not None
    [link] = await queue.links.listing()
    assert link["status"] == "flagged" and "not created by this service" in link["reason"]


async def test_a_source_that_skips_matched_persons_still_merges_the_link(
    queue: Queue, settings: Settings, redis: Redis, emulator: TestServer
) -> None:
    # on_match skip: nothing more on the lead (no note), but the link's policy applies.
    data: dict[str, Any] = copy.deepcopy(SOURCES)
    data["sources"]["partner"]["dedup"] = {"link": "merge", "on_match": "skip"}
    sources = sources_from(data)
    state = emulator_state(emulator)
    a, b = await two_leads(queue, settings, sources, redis)
    skipped = await third_submission(queue, settings, sources, redis, ("skipped",))
    assert skipped.lead_id == a.lead_id
    assert state.live_object("lead", str(b.lead_id)) is None
    assert merge_posts(emulator) == 1
    assert skipped.progress.steps["link"].state == "done"
    assert set(skipped.progress.steps) == {"link"}  # no note, no other step
    assert "third" not in " ".join(note_texts(emulator, str(a.lead_id)))
    [link] = await queue.links.listing()
    assert (link["status"], link["kept"]) == ("merged", a.lead_id)


async def test_a_lost_create_that_made_a_second_lead_is_linked_and_merged(
    queue: Queue, make_settings: Any, redis: Redis, emulator: TestServer
) -> None:
    # Email 1 + phone 2 made lead A. Email 2 + phone 1's create is applied but its answer lost
    # (lead B, which the search will not show for minutes). Meanwhile email 1 + phone 1 finds A
    # and names it for phone 1 too. The retry of the lost create meets A through phone 1, and
    # the event log shows its own B besides: a link, merged.
    sources = with_link("merge")
    state = emulator_state(emulator)
    settings = make_settings(
        event_log_lag_seconds=2.0, close_clock_skew_seconds=0.0, worker_concurrency=4
    )
    async with running_worker(settings, sources, redis):
        a = await wait_for_record(queue, await enqueue(queue, body(E1, P2, "first")))
        state.configure(search_lag_seconds=600.0)
        state.add_fault(method="POST", path="/api/v1/lead/", status=502, after_apply=True)
        lost = await enqueue(queue, body(E2, P1, "second"))
        await wait_until(lambda: len(lead_posts(state)) == 2)
        third = await enqueue(queue, body(E1, P1, "third"))
        c = await wait_for_record(queue, third, ("attached",))
        b = await wait_for_record(queue, lost, ("created", "attached"), within=15)
    assert c.lead_id == a.lead_id
    assert b.state == "created" and b.lead_id == a.lead_id  # its steps ran on the kept lead
    assert b.progress.link is not None and b.progress.link["via"] == "event log"
    made_by_b = next(i for i in b.progress.link["leads"] if i != a.lead_id)
    assert state.live_object("lead", made_by_b) is None  # merged away
    assert merge_posts(emulator) == 1
    for email in (E1, E2):
        assert [lead["id"] for lead in state.leads_with_email(email)] == [a.lead_id]
    [link] = await queue.links.listing()
    assert (link["status"], link["kept"], link["merged"]) == ("merged", a.lead_id, made_by_b)


async def test_a_link_whose_matched_lead_close_merged_already_follows_the_kept_one(
    queue: Queue, settings: Settings, redis: Redis, emulator: TestServer
) -> None:
    # Another submission merged B into A in Close but has not recorded it (its answer lost):
    # the next one, meeting B through its email, follows to A instead of making a new lead.
    sources = with_link("merge")
    state = emulator_state(emulator)
    a, b = await two_leads(queue, settings, sources, redis)
    merge_leads(str(b.lead_id), str(a.lead_id), state)
    async with running_worker(settings, sources, redis):
        fourth = await enqueue(queue, body(E2, P2, "fourth"))
        record = await wait_for_record(queue, fourth, ("attached",))
    assert record.lead_id == a.lead_id
    assert len(lead_posts(state)) == 2 and merge_posts(emulator) == 0
    assert await queue.links.follow(str(b.lead_id)) == a.lead_id
    [link] = await queue.links.listing()
    assert (link["status"], link["kept"], link["merged"]) == ("merged", a.lead_id, b.lead_id)
    assert "fourth" in " ".join(note_texts(emulator, str(a.lead_id)))


async def test_a_note_whose_answer_was_lost_before_a_merge_is_found_on_the_kept_lead(
    queue: Queue,
    settings: Settings,
    make_settings: Any,
    redis: Redis,
    keys: Keys,
    emulator: TestServer,
) -> None:
    # The note reached lead B, its answer lost; B is merged into A before the retry, seconds
    # later. The retry looks on B (nothing: the note moved), posts there (B is gone), follows
    # the merge to A and looks there from the step's first start: one note, not two.
    sources = with_link("merge")
    state = emulator_state(emulator)
    async with running_worker(make_settings(**HELD), sources, redis):
        a = await wait_for_record(queue, await enqueue(queue, body(E1, P1, "first")))
        b = await wait_for_record(queue, await enqueue(queue, body(E2, P2, "second")))
        state.add_fault(method="POST", path="/api/v1/activity/note/", status=502, after_apply=True)
        third = await enqueue(queue, {"contact": {"email": E2}, "notes": "third"})
        await wait_for_record(queue, third, ("retrying",))
    merge_leads(str(b.lead_id), str(a.lead_id), state)
    identities = sorted(lead_identities(state.leads[str(a.lead_id)]))
    await queue.links.merged(str(b.lead_id), str(a.lead_id), identities, cache_ttl=3600)
    # The retry's own start is later than the note by more than the clock skew allowed (5 s).
    await asyncio.sleep(6.0)
    await retry_now(redis, keys)
    async with running_worker(settings, sources, redis):
        record = await wait_for_record(queue, third, ("attached",), within=15)
    assert record.lead_id == a.lead_id
    notes = [n for n in state.notes_for(str(a.lead_id)) if has_marker(n["note"], third)]
    assert len(notes) == 1
    assert record.progress.steps["note"].close_id == notes[0]["id"]


async def test_a_created_lead_merged_away_unrecorded_is_followed_through_the_event_log(
    queue: Queue,
    settings: Settings,
    make_settings: Any,
    redis: Redis,
    keys: Keys,
    emulator: TestServer,
) -> None:
    # The submission made B; before its note's retry, B was merged into A by a submission that
    # has not recorded it (no merge map). Close's event log names A: the steps go on there,
    # instead of the submission ending dead on "lead does not exist".
    sources = with_link("merge")
    state = emulator_state(emulator)
    async with running_worker(make_settings(**HELD), sources, redis):
        a = await wait_for_record(queue, await enqueue(queue, body(E1, P1, "first")))
        state.add_fault(method="POST", path="/api/v1/activity/note/", status=502)
        made = await enqueue(queue, body(E2, P2, "second"))
        await wait_for_record(queue, made, ("retrying",))
    b = await queue.records.get(made)
    assert b is not None and b.lead_id and b.progress.lead_created
    merge_leads(str(b.lead_id), str(a.lead_id), state)
    await retry_now(redis, keys)
    async with running_worker(settings, sources, redis):
        record = await wait_for_record(queue, made, ("created", "dead"), within=15)
    assert record.state == "created" and record.lead_id == a.lead_id
    assert "second" in " ".join(note_texts(emulator, str(a.lead_id)))
