"""The chaos run: submissions sent to receiver processes while workers, a receiver and Redis
are killed or restarted and the Close emulator misbehaves; then the books are checked.

The plan (deterministic for a seed): about 72% new persons, 20% submissions of a person seen
before (half to a source that attaches a note, half to one that skips), 5% repeat deliveries of
an earlier submission (same ``Idempotency-Key``, sent after the first was answered), 2% new
persons whose payload Close refuses for good (the injected permanent error: a number in a text
custom field) and 1% payloads without email, phone or name (refused at the door with 422: they
can never become a lead).

Senders behave like a partner's retrying client: on a connection error, a timeout, a 5xx or a
429 they send the same delivery again (same ``Idempotency-Key``), to the next receiver, until
they get a 2xx. Every id answered with a 2xx is "accepted" and must reach a final state.
"""

from __future__ import annotations

import asyncio
import copy
import json
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from redis.asyncio import Redis
from redis.exceptions import RedisError

from service.keys import GROUP, Keys
from service.queue.records import FINAL_STATES, Record
from tests.reliability.followup_books import Submission, check_followups
from tests.reliability.harness import (
    ADMIN_TOKEN,
    CLOSE_KEY,
    EMAIL_DOMAIN,
    PREFIX,
    SOURCES,
    Stack,
    leaks,
)
from tests.reliability.note_books import check_notes
from tests.team import ORG, REPS

# The whole follow-up, on a match too: every submission makes a task, an opportunity and a
# custom activity (asserted: at most one each), a person one subscription, and every
# re-submission appends its visit to the lead (asserted: no update lost or applied twice).
FOLLOWUP: dict[str, Any] = {
    "owner": {
        "field": "Lead Owner",
        "pool": "inbound",
        "pools": {"inbound": {"group": "Inbound Reps"}},
    },
    "task": {"text": "Call ${full_name}: ${message}", "on_match": True},
    "sequence": {"name": "Inbound nurture", "on_match": True},
    "update": {"default": "never", "fields": {"Visits": "append"}},
    "opportunity": {"pipeline": "Sales", "policy": "always", "value": "`100`", "on_match": True},
    "activity": {
        "type": "Web Form Submission",
        "fields": {"Source": "source", "Message": "message"},
        "marker_field": "Submission ID",
        "on_match": True,
    },
}
FOLLOWUP_TABLES = {"task": "tasks", "opportunity": "opportunities", "activity": "activities"}


LINK_POLICY = {"chaos": "merge", "chaos-skip": "merge", "chaos-flag": "flag"}
"""Each source's ``dedup.link``: an identity link found by chaos or chaos-skip is merged, one
found by chaos-flag is listed as a possible duplicate."""


def chaos_sources() -> dict[str, Any]:
    sources = copy.deepcopy(SOURCES)
    sources["sources"]["chaos-flag"] = copy.deepcopy(sources["sources"]["chaos"])
    sources["sources"]["chaos-flag"]["description"] = "chaos run: like chaos, links flagged"
    for name, source in sources["sources"].items():
        source["extract"]["extra.visit"] = "body.visit"
        source["lead"]["custom"]["Visits"] = "extra.visit"
        source["followup"] = FOLLOWUP
        source["dedup"] = {**source.get("dedup", {}), "link": LINK_POLICY[name]}
    return sources


def chaos_org(plan: ChaosPlan) -> dict[str, Any]:
    """The team's organisation, and a multi-value field with one choice per submission."""
    org = copy.deepcopy(ORG)
    visits = [f"v{n}" for n in range(plan.submissions)]
    org["custom_fields"]["lead"].append(
        {"name": "Visits", "type": "choices", "choices": visits, "accepts_multiple_values": True}
    )
    return org


@dataclass(frozen=True)
class ChaosPlan:
    submissions: int
    send_seconds: float
    """Sending is spread over this long, so the chaos happens while load comes in."""
    settle_seconds: float
    """After the last send: how long every accepted submission gets to reach a final state."""
    workers: int = 3
    receivers: int = 2
    concurrency: int = 32
    seed: int = 1
    worker_kill_every: tuple[float, float] = (0.8, 2.0)
    burst_every: tuple[float, float] = (2.0, 4.0)
    worker_concurrency: int = 16
    close_timeout: float = 1.5
    """INTAKE_CLOSE_TIMEOUT_SECONDS; the emulator's hangs last a second longer."""
    search_lag: float = 10.0
    """Close's search-index lag: longer than the grace period, so only the event log can
    tell an unknown create's lead in time."""
    grace: float = 3.0
    """INTAKE_UNKNOWN_OUTCOME_GRACE_SECONDS: the fallback when the event log cannot be read."""


@dataclass
class Delivery:
    n: int
    key: str
    source: str
    body: dict[str, Any]
    kind: str
    """new | repeat-person | redelivery | poison | reject | linked"""
    email: str | None
    phone: str | None = None
    original: Delivery | None = None
    person: str | None = None
    """Who sent it: the person's first email (a linked person has two)."""
    after: tuple[Delivery, ...] = ()
    """Sent once these are final (a linked person's submission with both identities comes
    after the two that made a lead each)."""
    accepted_id: str | None = None
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    http_attempts: int = 0
    first_status: int | None = None
    statuses: list[int] = field(default_factory=list)
    refused: bool = False
    """Answered 422: it can never become a lead (only a ``reject`` delivery may be)."""

    @property
    def never_a_lead(self) -> bool:
        return self.kind == "reject" or (
            self.original is not None and self.original.kind == "reject"
        )


def make_plan(plan: ChaosPlan, run: str) -> list[Delivery]:
    rng = random.Random(plan.seed)
    out: list[Delivery] = []
    persons: list[tuple[str, str | None, str]] = []  # email, phone, name of reusable persons
    later: dict[int, Delivery] = {}  # a linked person's submissions still to come, by slot
    for n in range(plan.submissions):
        key = f"{run}-{n}"
        if n in later:
            out.append(later.pop(n))
            continue
        roll = rng.random()
        if n >= 20 and roll < 0.05:
            original = out[rng.randrange(len(out))]
            while original.original is not None:
                original = original.original
            out.append(
                Delivery(
                    n,
                    original.key,
                    original.source,
                    original.body,
                    "redelivery",
                    original.email,
                    original.phone,
                    original=original,
                )
            )
            continue
        if persons and roll < 0.25:
            email, phone, name = persons[rng.randrange(len(persons))]
            source = "chaos" if rng.random() < 0.5 else "chaos-skip"
            body = _body(email, phone, name, f"follow-up {n}", n)
            out.append(Delivery(n, key, source, body, "repeat-person", email, phone))
            continue
        email = f"p{n}-{run}@{EMAIL_DOMAIN}"
        name = f"Chaos Person {n}"
        phone = f"+1 415 2{n // 10000 % 100:02d} {n % 10000:04d}" if n % 3 == 0 else None
        if roll < 0.27:
            body = {**_body(email, phone, name, "poison", n), "external_id": 42}
            out.append(Delivery(n, key, "chaos", body, "poison", email, phone))
        elif roll < 0.28:
            body = {"message": f"nobody {n}", "company": "No Identity Ltd"}
            out.append(Delivery(n, key, "chaos", body, "reject", None))
        elif roll < 0.31 and n + 70 < plan.submissions and n + 1 not in later:
            _linked_person(rng, n, run, later, out)
        else:
            body = {**_body(email, phone, name, f"hello {n}", n), "external_id": f"ext-{n}"}
            out.append(Delivery(n, key, "chaos", body, "new", email, phone))
            persons.append((email, phone, name))
    out.extend(later[slot] for slot in sorted(later))  # pushed past the end by a collision
    return out


def _linked_person(
    rng: random.Random, n: int, run: str, later: dict[int, Delivery], out: list[Delivery]
) -> None:
    """A person with two emails and two phones: email 1 with phone 2 (now) and email 2 with
    phone 1 (next), each a lead of its own; then email 1 with phone 1, whose lookup finds both
    leads (an identity link) when it comes once both are final, and sometimes email 2 with
    phone 2 at about the same time (a second submission finding the same link)."""
    e1, e2 = f"p{n}-{run}@{EMAIL_DOMAIN}", f"p{n}-alt-{run}@{EMAIL_DOMAIN}"
    p1 = f"+1 415 3{n // 10000 % 100:02d} {n % 10000:04d}"
    p2 = f"+1 415 4{n // 10000 % 100:02d} {n % 10000:04d}"
    name = f"Linked Person {n}"
    flag = rng.random() < 0.3
    made = "chaos-flag" if flag else "chaos"

    def delivery(slot: int, source: str, email: str, phone: str, what: str) -> Delivery:
        body = {**_body(email, phone, name, what, slot), "external_id": f"ext-{slot}"}
        return Delivery(slot, f"{run}-{slot}", source, body, "linked", email, phone, person=e1)

    first = delivery(n, made, e1, p2, f"hello {n}")
    second = delivery(n + 1, made, e2, p1, f"hello again {n}")
    out.append(first)
    later[n + 1] = second
    # Half of them send email 1 + phone 1 once both leads are there (the link to find); the
    # others right behind, in any order with the first two (no second lead to make at all).
    wait = rng.random() < 0.5
    slot = _free(later, n + (rng.randint(20, 60) if wait else rng.randint(2, 6)))
    source = "chaos-flag" if flag else rng.choice(["chaos", "chaos-skip"])
    both = delivery(slot, source, e1, p1, f"both {n}")
    both.after = (first, second) if wait else ()
    later[slot] = both
    if rng.random() < 0.5:
        slot = _free(later, slot + rng.randint(1, 4))
        other = delivery(slot, source, e2, p2, f"both again {n}")
        other.after = both.after
        later[slot] = other


def _free(later: dict[int, Delivery], slot: int) -> int:
    while slot in later:
        slot += 1
    return slot


def _body(email: str, phone: str | None, name: str, message: str, n: int) -> dict[str, Any]:
    contact = {"email": email, "name": name}
    if phone:
        contact["phone"] = phone
    return {"contact": contact, "company": f"{name} Inc", "message": message, "visit": f"v{n}"}


class Senders:
    """Retrying clients: the same delivery again (same key) until a 2xx."""

    def __init__(self, stack: Stack, deliveries: list[Delivery], plan: ChaosPlan) -> None:
        self.stack = stack
        self.deliveries = deliveries
        self.plan = plan
        self.errors: list[str] = []
        self.redis = Redis.from_url(stack.redis.url, decode_responses=True)
        """For a delivery sent once others are final (``Delivery.after``)."""
        self.retries = 0
        self.answers: Counter[str] = Counter()

    async def run(self) -> None:
        connector = aiohttp.TCPConnector(limit=self.plan.concurrency)
        timeout = aiohttp.ClientTimeout(total=10)
        queue: asyncio.Queue[Delivery] = asyncio.Queue()
        waiting: list[asyncio.Task[None]] = []
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            tasks = [
                asyncio.create_task(self._sender(session, queue))
                for _ in range(self.plan.concurrency)
            ]
            interval = self.plan.send_seconds / max(1, len(self.deliveries))
            started = time.monotonic()
            for delivery in self.deliveries:
                if delivery.after:  # waits for others to be final without taking a sender
                    waiting.append(asyncio.create_task(self._after(delivery, queue)))
                else:
                    await queue.put(delivery)
                due = started + delivery.n * interval
                await asyncio.sleep(max(0.0, due - time.monotonic()))
            await asyncio.gather(*waiting)
            await queue.join()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        await self.redis.aclose()

    async def _sender(self, session: aiohttp.ClientSession, queue: asyncio.Queue[Delivery]) -> None:
        while True:
            delivery = await queue.get()
            try:
                if delivery.original is not None:
                    await delivery.original.answered.wait()  # a repeat comes after the first
                await self._send(session, delivery)
            finally:
                queue.task_done()

    async def _after(self, delivery: Delivery, queue: asyncio.Queue[Delivery]) -> None:
        """Queue ``delivery`` once every submission of ``delivery.after`` is final (a long
        run's backlog can hold them for minutes)."""
        deadline = time.monotonic() + self.plan.send_seconds + self.plan.settle_seconds
        for earlier in delivery.after:
            await earlier.answered.wait()
            key = Keys(PREFIX).sub(earlier.accepted_id or "")
            while earlier.accepted_id and time.monotonic() < deadline:
                try:
                    if await self.redis.hget(key, "state") in FINAL_STATES:
                        break
                except RedisError:
                    pass  # Redis is being restarted
                await asyncio.sleep(0.2)
        await queue.put(delivery)

    async def _send(self, session: aiohttp.ClientSession, delivery: Delivery) -> None:
        deadline = time.monotonic() + 120
        attempt = 0
        data = json.dumps(delivery.body).encode()
        headers = {"Content-Type": "application/json", "Idempotency-Key": delivery.key}
        while time.monotonic() < deadline:
            receivers = self.stack.receivers
            proc = receivers[(delivery.n + attempt) % len(receivers)]
            url = f"{self.stack.receiver_url(proc)}/hooks/{delivery.source}"
            delivery.http_attempts += 1
            status = 0
            answer: Any = None
            try:
                async with session.post(url, data=data, headers=headers) as response:
                    status = response.status
                    answer = await response.json(content_type=None)
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                self.answers[type(exc).__name__] += 1
            else:
                self.answers[str(status)] += 1
            delivery.statuses.append(status)
            if delivery.first_status is None:
                delivery.first_status = status
            if status in (200, 202):
                self._accepted(delivery, status, answer, attempt)
                return
            if status == 422 and delivery.never_a_lead:
                delivery.refused = True  # refused at the door: nothing stored, nothing lost
                delivery.answered.set()
                return
            if status and status < 500 and status != 429:
                self.errors.append(f"delivery {delivery.n}: refused {status} {answer}")
                delivery.answered.set()
                return
            attempt += 1
            self.retries += 1
            await asyncio.sleep(random.uniform(0, min(1.0, 0.05 * 2**attempt)))
        self.errors.append(f"delivery {delivery.n}: no 2xx within 120 s: {delivery.statuses}")
        delivery.answered.set()

    def _accepted(self, delivery: Delivery, status: int, answer: Any, attempt: int) -> None:
        sub_id = answer.get("id") if isinstance(answer, dict) else None
        if not isinstance(sub_id, str) or not sub_id.startswith("sub_"):
            self.errors.append(f"delivery {delivery.n}: {status} without an id: {answer}")
        elif delivery.original is not None:
            first = delivery.original.accepted_id
            if status != 200 or answer.get("duplicate") is not True or sub_id != first:
                self.errors.append(
                    f"repeat delivery {delivery.n} of {delivery.original.n}: {status} {answer}, "
                    f"expected 200 duplicate with the first id {first}"
                )
        elif status == 200 and attempt == 0:
            # A first delivery answered as a duplicate on its first try: two deliveries mixed up.
            self.errors.append(f"delivery {delivery.n}: a first send answered {answer}")
        delivery.accepted_id = sub_id
        delivery.answered.set()


class Monkey:
    """Kills and restarts processes and makes Close misbehave, until told to stop."""

    def __init__(self, stack: Stack, plan: ChaosPlan) -> None:
        self.stack = stack
        self.plan = plan
        self.rng = random.Random(plan.seed + 1)
        self.stopping = asyncio.Event()
        self.events: list[str] = []
        self.bursts = 0
        self.redis_away = 0.0
        self.started = time.monotonic()

    def note(self, text: str) -> None:
        self.events.append(f"{time.monotonic() - self.started:6.1f}s {text}")

    async def _sleep(self, seconds: float) -> bool:
        """Sleep; True if stopping was asked meanwhile."""
        try:
            await asyncio.wait_for(self.stopping.wait(), seconds)
        except TimeoutError:
            return False
        return True

    async def kill_workers(self) -> None:
        while not await self._sleep(self.rng.uniform(*self.plan.worker_kill_every)):
            victim = self.rng.choice(self.stack.workers)
            await victim.kill()
            self.note(f"SIGKILL {victim.name}")
            await asyncio.sleep(self.rng.uniform(0.1, 0.6))
            await victim.start()

    async def watch(self) -> None:
        """Restart a process that died by itself (and remember it: that is a finding)."""
        while not await self._sleep(0.2):
            for proc in self.stack.services:
                if proc.process is not None and not proc.check_alive():
                    self.note(f"{proc.name} died by itself; restarting")
                    await proc.start()

    async def kill_receiver(self, at: float) -> None:
        if await self._sleep(at):
            return
        victim = self.stack.receivers[0]
        await victim.kill()
        self.note(f"SIGKILL {victim.name} mid-load")
        await asyncio.sleep(1.0)
        await victim.start()
        self.note(f"{victim.name} restarted")

    async def restart_redis(self, at: float) -> None:
        if await self._sleep(at):
            return
        self.note("redis-server: stop (AOF written out) ...")
        self.redis_away = await self.stack.restart_redis()
        self.note(f"redis-server: back after {self.redis_away:.2f}s, AOF reloaded")

    async def bursts_of_429(self) -> None:
        emulator = self.stack.emulator
        while not await self._sleep(self.rng.uniform(*self.plan.burst_every)):
            await emulator.configure(rate_limit=6, rate_window=1.0)
            self.bursts += 1
            await self._sleep(1.0)
            await emulator.configure(rate_limit=None)


@dataclass
class Outcome:
    plan: ChaosPlan
    deliveries: list[Delivery]
    records: dict[str, Record | None]
    leads: list[dict[str, Any]]
    requests: list[dict[str, Any]]
    senders: Senders
    monkey: Monkey
    stack: Stack
    leftovers: dict[str, int]
    elapsed: float
    settled: float
    """Seconds from the end of the chaos until everything was final."""
    merges: dict[str, str] = field(default_factory=dict)
    """Close's merges: the lead merged away -> the lead it went into."""
    links: list[dict[str, Any]] = field(default_factory=list)
    """The identity links the admin API lists (``leads``: their two ids)."""
    objects: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """The follow-ups Close holds: tasks, opportunities, activities, subscriptions, notes."""
    config: dict[str, Any] = field(default_factory=dict)
    """The emulator's options (users, fields)."""
    pending_detail: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    counts_links: dict[str, int] = field(default_factory=dict)

    def check(self) -> None:
        """Fill ``counts`` and ``failures`` (empty when every promise held)."""
        fail = self.failures
        fail.extend(self.senders.errors)
        fail.extend(self.stack.crashes())
        firsts = [d for d in self.deliveries if d.original is None and not d.refused]
        accepted = {d.accepted_id for d in firsts if d.accepted_id}
        by_state: Counter[str] = Counter()
        lost = []
        for sub_id in accepted:
            record = self.records.get(sub_id)
            if record is None or record.state not in FINAL_STATES:
                lost.append(sub_id)
            else:
                by_state[record.state] += 1
        final_records = sum(by_state.values())
        if lost:
            fail.append(f"{len(lost)} accepted submissions not final: {self._states(lost)}")
            fail.extend(self._record_history(sub_id) for sub_id in sorted(lost)[:5])
            fail.extend(self.pending_detail)
        if len(accepted) != len(firsts):
            fail.append(f"{len(firsts) - len(accepted)} deliveries never accepted")
        # One lead per person, and none for the persons Close refused.
        leads_by_email: dict[str, list[str]] = defaultdict(list)
        for lead in self.leads:
            emails = {
                str(e.get("email", "")).lower()
                for contact in lead.get("contacts", [])
                for e in contact.get("emails", [])
            }
            for email in emails:
                leads_by_email[email].append(str(lead["id"]))
        good = {d.email for d in firsts if d.kind in ("new", "repeat-person", "linked") and d.email}
        poison = {d.email for d in firsts if d.kind == "poison" and d.email}
        # A flagged person's two leads may both show an email (a match by the shared phone
        # adds it to the contact): listed as a possible duplicate, not made twice.
        flagged_persons = self._check_links(firsts, leads_by_email)
        allowed = {d.email for d in firsts if d.person in flagged_persons}
        duplicates = {
            e: ids for e, ids in leads_by_email.items() if len(ids) > 1 and e not in allowed
        }
        # A person has a lead when one of their emails is on one. (A linked person's other
        # email may be on none: a submission matched by the phone it shares with a lead
        # attaches there without adding the email.)
        emails_of: dict[str, set[str]] = defaultdict(set)
        for d in firsts:
            if d.email in good:
                emails_of[d.person or d.email].add(d.email)
        missing = sorted(
            person
            for person, emails in emails_of.items()
            if not any(leads_by_email.get(e) for e in emails)
        )
        poisoned_leads = sorted(e for e in poison if leads_by_email.get(e))
        strangers = sorted(set(leads_by_email) - good - poison)
        if duplicates:
            fail.append(f"{len(duplicates)} persons with more than one lead:")
            fail.extend(self._history(email, ids) for email, ids in sorted(duplicates.items()))
        if missing:
            fail.append(f"{len(missing)} persons without a lead: {missing[:5]}")
            fail.extend(self._history(email, [], of_person=True) for email in missing[:2])
        if poisoned_leads or strangers:
            fail.append(f"leads that should not exist: {poisoned_leads[:5]} {strangers[:5]}")
        applied = [
            r
            for r in self.requests
            if r["method"] == "POST" and r["path"] == "/api/v1/lead/" and r["applied"]
        ]
        if len(applied) != len(self.leads) + len(self.merges):
            fail.append(
                f"{len(applied)} lead creates applied for {len(self.leads)} leads "
                f"and {len(self.merges)} merged away"
            )
        # Records of one person name the same lead (the one it was merged into, if it was).
        lead_of: dict[str, set[str]] = defaultdict(set)
        for d in firsts:
            record = self.records.get(d.accepted_id or "")
            if d.email and record is not None and record.lead_id:
                lead_of[d.person or d.email].add(self.follow(record.lead_id))
        split = {e: ids for e, ids in lead_of.items() if len(ids) > 1 and e not in flagged_persons}
        if split:
            fail.append(f"persons whose records name different leads: {list(split.items())[:3]}")
        # Dead only where the permanent error was injected, and there always.
        poison_ids = {d.accepted_id for d in firsts if d.kind == "poison"}
        dead_ids = {i for i in accepted if self._state(i) == "dead"}
        if dead_ids - poison_ids:
            fail.append(f"dead without an injected permanent error: {self._states(dead_ids)}")
        not_refused = {i for i in poison_ids if self._state(i) not in ("dead", "rejected")}
        if not_refused:
            fail.append(f"poisoned submissions not dead/rejected: {self._states(not_refused)}")
        for sub_id in poison_ids & dead_ids:
            record = self.records[sub_id or ""]
            assert record is not None
            if (record.last_error or {}).get("status") != 400:
                fail.append(f"{sub_id} dead without Close's 400 in its record: {record.last_error}")
        rejected_kinds = Counter(
            d.kind for d in firsts if self._state(d.accepted_id or "") == "rejected"
        )
        if set(rejected_kinds) - {"reject"}:
            fail.append(f"rejected submissions that were fine: {dict(rejected_kinds)}")
        for name, count in self.leftovers.items():
            if count:
                fail.append(f"left behind in Redis: {name} = {count}")
        repeats = [d for d in self.deliveries if d.original is not None]
        self.counts = {
            "sent": len(self.deliveries),
            "http requests": sum(d.http_attempts for d in self.deliveries),
            "accepted": len(accepted),
            "final records": final_records,
            "created": by_state["created"],
            "attached": by_state["attached"],
            "skipped": by_state["skipped"],
            "rejected": by_state["rejected"],
            "refused at the door (422)": sum(d.refused for d in self.deliveries),
            "dead": by_state["dead"],
            "duplicates": sum(len(ids) - 1 for ids in duplicates.values()),
            "lost": len(lost),
            "persons": len({d.person or d.email for d in firsts if d.email in good}),
            "leads": len(self.leads),
            "repeat deliveries (200 duplicate)": len(repeats),
            "poisoned (Close 400)": len(poison_ids),
            **self.counts_links,
        }
        if final_records != len(accepted):
            fail.append(f"accepted {len(accepted)} != final-state records {final_records}")
        submissions = [
            Submission(record, d.email, d.body.get("visit"), d.source)
            for d in firsts
            if (record := self.records.get(d.accepted_id or "")) is not None
        ]
        found, counts = check_followups(
            submissions, self.leads, self.objects, self.requests, self.config, REPS, self.follow
        )
        fail.extend(found)
        self.counts.update(counts)
        found, counts = check_notes(submissions, self.objects["notes"], self.follow)
        fail.extend(found)
        self.counts.update(counts)

    def follow(self, lead_id: str) -> str:
        """The lead ``lead_id`` is now: itself, or the one Close merged it into."""
        seen = {lead_id}
        while lead_id in self.merges and self.merges[lead_id] not in seen:
            lead_id = self.merges[lead_id]
            seen.add(lead_id)
        return lead_id

    def _check_links(
        self, firsts: list[Delivery], leads_by_email: dict[str, list[str]]
    ) -> set[str]:
        """The persons with two emails (``_linked_person``): one lead each under ``merge``;
        under ``flag``, two leads only with a flagged link listing them. Returns the persons
        the flag allows two leads."""
        linked = [d for d in firsts if d.kind == "linked" and d.person and d.email]
        flagging = {d.person for d in linked if LINK_POLICY[d.source] == "flag"}
        leads_of: dict[str, set[str]] = defaultdict(set)
        for d in linked:
            assert d.person and d.email
            leads_of[d.person].update(leads_by_email.get(d.email.lower(), []))
        listed = {frozenset(link["leads"]) for link in self.links if link["status"] == "flagged"}
        merged_links = [link for link in self.links if link["status"] == "merged"]
        two = {person: leads for person, leads in leads_of.items() if len(leads) > 1}
        under_merge = {p: sorted(leads) for p, leads in two.items() if p not in flagging}
        unlisted = {
            p: sorted(leads)
            for p, leads in two.items()
            if p in flagging and frozenset(leads) not in listed
        }
        if under_merge:
            self.failures.append(f"{len(under_merge)} persons with two leads under merge:")
            self.failures.extend(
                self._history(person, leads, of_person=True)
                for person, leads in list(under_merge.items())[:3]
            )
        if unlisted:
            self.failures.append(
                f"{len(unlisted)} persons with two leads and no flagged link listing them: "
                f"{list(unlisted.items())[:3]}"
            )
        bad = [link for link in merged_links if self.follow(link["merged"]) != link["kept"]]
        if bad:
            self.failures.append(f"merged links Close does not show merged: {bad[:3]}")
        self.counts_links = {
            "linked persons": len(leads_of),
            "  under merge: leads merged away": len(self.merges),
            "  under merge: persons with two leads": len(under_merge),
            "  under flag: persons with two leads": len(two) - len(under_merge),
            "  under flag: flagged links listed": len(listed),
        }
        return {p for p in flagging if p in two and p not in unlisted}

    def _state(self, sub_id: str | None) -> str | None:
        record = self.records.get(sub_id or "")
        return record.state if record else None

    def _states(self, ids: set[str | None] | list[str]) -> str:
        return str(Counter(self._state(i) for i in ids)) + f" e.g. {sorted(map(str, ids))[:3]}"

    def _record_history(self, sub_id: str) -> str:
        record = self.records.get(sub_id)
        if record is None:
            return f"    {sub_id}: no record"
        lines = [f"    {record.id} {record.source} {record.state}:"]
        lines.extend(f"      {json.dumps(event)}" for event in record.history)
        return "\n".join(lines)

    def _history(self, email: str, lead_ids: list[str], *, of_person: bool = False) -> str:
        """The records of ``email``'s submissions (of its person's, with ``of_person``)."""
        lines = [f"  {email}: leads {lead_ids}"]
        for d in self.deliveries:
            if (d.person if of_person else d.email) == email and d.original is None:
                record = self.records.get(d.accepted_id or "")
                if record is not None:
                    lines.append(f"    {record.id} {record.source} {record.state}:")
                    lines.extend(f"      {json.dumps(event)}" for event in record.history)
        return "\n".join(lines)

    def table(self) -> str:
        faults = Counter(str(r.get("fault")) for r in self.requests if r.get("fault"))
        statuses = Counter(str(r["status"]) for r in self.requests)
        width = max(len(k) for k in self.counts)
        lines = [
            f"chaos run: {self.plan.submissions} submissions in {self.elapsed:.1f}s "
            f"(all final {self.settled:.1f}s after the chaos stopped)"
        ]
        lines += [f"  {k:<{width}}  {v}" for k, v in self.counts.items()]
        lines.append(
            f"  chaos: {sum(w.kills for w in self.stack.workers)} worker SIGKILLs, "
            f"{sum(r.kills for r in self.stack.receivers)} receiver SIGKILL, "
            f"{self.stack.redis_restarts} redis restart ({self.monkey.redis_away:.2f}s away), "
            f"{self.monkey.bursts} 429 bursts, search lag {self.plan.search_lag}s"
        )
        lines.append(f"  Close faults injected: {dict(sorted(faults.items()))}")
        cpu = {
            "receivers": sum(p.cpu_seconds for p in self.stack.receivers),
            "workers": sum(p.cpu_seconds for p in self.stack.workers),
            "emulator": self.stack.emulator.proc.cpu_seconds,
        }
        lines.append("  CPU seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in cpu.items()))
        lines.append(f"  Close answers: {dict(sorted(statuses.items()))}")
        lines.append(f"  door answers: {dict(sorted(self.senders.answers.items()))}")
        return "\n".join(lines)


async def _collect(redis: Redis, ids: list[str]) -> dict[str, Record | None]:
    keys = Keys(PREFIX)
    out: dict[str, Record | None] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        pipe = redis.pipeline(transaction=False)
        for sub_id in chunk:
            pipe.hgetall(keys.sub(sub_id))
        for sub_id, raw in zip(chunk, await pipe.execute(), strict=True):
            out[sub_id] = Record.from_hash(raw) if raw else None
    return out


async def _listed_links(stack: Stack) -> list[dict[str, Any]]:
    """Every identity link, as the admin API lists them (``GET /v1/links``, page by page),
    each with its two lead ids."""
    url = f"{stack.receiver_url(stack.receivers[0])}/v1/links"
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    out: list[dict[str, Any]] = []
    query: dict[str, str] = {"limit": "50"}
    async with aiohttp.ClientSession() as http:
        while True:
            async with http.get(url, params=query, headers=headers) as answer:
                assert answer.status == 200, await answer.text()
                page = await answer.json()
            out.extend(
                {**link, "leads": [lead["id"] for lead in link["leads"]]} for link in page["links"]
            )
            if not page["more"]:
                return out
            query["before"] = repr(page["next_before"])


async def _leftovers(redis: Redis) -> dict[str, int]:
    keys = Keys(PREFIX)
    pending = await redis.xpending(keys.stream, GROUP)
    return {
        "stream entries": int(await redis.xlen(keys.stream)),
        "pending entries": int(pending["pending"]),
        "scheduled retries": int(await redis.zcard(keys.retry)),
    }


async def _settle(redis: Redis, ids: list[str], within: float) -> float:
    """Wait until every id is final and nothing is left in the stream or the retry schedule;
    returns how long that took."""
    started = time.monotonic()
    while time.monotonic() < started + within:
        try:
            records = await _collect(redis, ids)
            done = all(r is not None and r.state in FINAL_STATES for r in records.values())
            if done and not any((await _leftovers(redis)).values()):
                break
        except RedisError:
            pass
        await asyncio.sleep(0.25)
    return time.monotonic() - started


async def run_chaos(workdir: Path, plan: ChaosPlan) -> Outcome:
    run = f"r{plan.seed}"
    deliveries = make_plan(plan, run)
    settings = {
        "worker_concurrency": plan.worker_concurrency,
        "visibility_timeout_seconds": 2,
        "read_block_ms": 200,
        "retry_base_seconds": 0.2,
        "retry_max_seconds": 1.5,
        "unknown_outcome_grace_seconds": plan.grace,
        "close_timeout_seconds": plan.close_timeout,
        "identity_lock_seconds": 3,
        "identity_lock_wait_seconds": 2,
        "shutdown_grace_seconds": 2,
        "drain_seconds": 0,
        "auth_probe_seconds": 0.5,
        # Emulator and workers share this machine's clock: a lost follow-up is looked for
        # exactly among what Close made after its step began.
        "close_clock_skew_seconds": 0,
    }
    started = time.monotonic()
    async with Stack(
        workdir,
        receivers=plan.receivers,
        workers=plan.workers,
        seed=plan.seed,
        sources=chaos_sources(),
        org=chaos_org(plan),
        **settings,
    ) as stack:
        await stack.emulator.configure(
            error_rate=0.03,  # 5xx before applying
            error_after_apply_rate=0.03,  # applied, then 5xx: the outcome is unknown
            hang_rate=0.01,  # no answer within the worker's timeout
            hang_seconds=plan.close_timeout + 1.0,
            search_lag_seconds=plan.search_lag,
        )
        senders = Senders(stack, deliveries, plan)
        monkey = Monkey(stack, plan)
        chaos = [
            asyncio.create_task(monkey.kill_workers()),
            asyncio.create_task(monkey.watch()),
            asyncio.create_task(monkey.kill_receiver(plan.send_seconds * 0.35)),
            asyncio.create_task(monkey.restart_redis(plan.send_seconds * 0.6)),
            asyncio.create_task(monkey.bursts_of_429()),
        ]
        try:
            await senders.run()
            await asyncio.sleep(2.0)  # a little more chaos while the backlog drains
        finally:
            monkey.stopping.set()
            await asyncio.gather(*chaos)
        await stack.emulator.configure(rate_limit=None)
        for proc in stack.services:  # whatever was killed last is running again
            if not proc.running:
                await proc.start()
        ids = sorted({d.accepted_id for d in deliveries if d.accepted_id})
        redis = Redis.from_url(stack.redis.url, decode_responses=True)
        try:
            settled = await _settle(redis, ids, plan.settle_seconds)
            records = await _collect(redis, ids)
            leftovers = await _leftovers(redis)
            pending = await redis.xpending_range(
                Keys(PREFIX).stream, GROUP, min="-", max="+", count=10
            )
            consumers = await redis.xinfo_consumers(Keys(PREFIX).stream, GROUP)
        finally:
            await redis.aclose()
        objects = {
            table: await stack.emulator.objects(table)
            for table in ("tasks", "opportunities", "activities", "subscriptions", "notes")
        }
        merges = {m["lead_id"]: m["destination"] for m in await stack.emulator.objects("merges")}
        links = await _listed_links(stack)
        outcome = Outcome(
            plan=plan,
            deliveries=deliveries,
            records=records,
            leads=await stack.emulator.leads(),
            requests=await stack.emulator.requests(),
            objects=objects,
            merges=merges,
            links=links,
            config=await stack.emulator.config(),
            senders=senders,
            monkey=monkey,
            stack=stack,
            leftovers=leftovers,
            elapsed=time.monotonic() - started,
            settled=settled,
            pending_detail=[f"    pending: {p}" for p in pending]
            + [f"    consumer: {c}" for c in consumers],
        )
        outcome.check()
        # What every service process wrote: no secret, no email or phone in the clear.
        phones = {d.phone for d in deliveries if d.phone}
        for name, text in stack.service_logs():
            found = leaks(text, secrets=(CLOSE_KEY, ADMIN_TOKEN), phones=phones)
            if found:
                outcome.failures.append(f"{name}'s log gives away: {found[:10]}")
    return outcome
