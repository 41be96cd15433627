"""7. The follow-ups: speed to lead and Close calls per lead with the whole follow-up configured.

The partner source gets a ``followup:`` section (bench/followups.yaml): the owner round-robin
over a group of four reps (into the create body), a task for the owner, the sequence from the
owner's mailbox, the update of a returning person's lead (their new comment overwrites the
description: one PUT), an opportunity (only while none is active, looked for on a match too)
and the submission as a custom activity (on a match too), besides the note. The emulator
emulates the organisation of bench/team.yaml.

- **Speed to lead** (receipt → task created): a paced poster (open loop) sends signed webhooks
  to one receiver, one worker (16 tasks) delivers them, at Close latency 0 and 50 ms. From the
  records: the task step's ``at`` (when Close's answer to the task arrived) less ``received_at``.
  Target: p99 under 250 ms at latency 0, and under (Close calls on the path x latency + 150
  ms) at 50 ms; the calls on the path (the person's search, the create, the task) are counted
  from the emulator's log.
- **Close calls per lead, and the rate-limit bound with them**: the emulator limits every
  endpoint group to ``LIMIT`` requests per second; three worker processes (our limiter at the
  limit) drain new people, then the same people again. Calls per lead per group from the
  emulator's log; the bound is min over groups of limit / calls per lead (section 3's, now
  with the follow-ups' groups).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from bench.drain import drain_run
from bench.load import post_paced
from bench.procs import Procs
from bench.ratelimit import bound, per_group, steady_rate
from bench.stack import Stack, emulator_prepare, emulator_requests, percentile, wait_drained
from service.config.settings import Settings
from service.keys import Keys
from service.queue.connection import redis_from_url
from service.queue.records import Record

BENCH = Path(__file__).resolve().parent
LIMIT = 20
WINDOW = 1.0
PROCESSES = 3
PATH_GROUPS = ("search", "lead_write", "task_write")
"""What a new person's task waits for: the search, the create (the owner in its body), the task."""


def followup_stack(stack: Stack) -> Stack:
    """The bench's sources with the follow-ups on the partner source."""
    sources = yaml.safe_load(stack.sources_file.read_text())
    followup = yaml.safe_load((BENCH / "followups.yaml").read_text())
    sources["sources"]["partner"]["followup"] = followup
    path = stack.workdir / "sources-followups.yaml"
    path.write_text(yaml.safe_dump(sources, sort_keys=False))
    return dataclasses.replace(stack, sources_file=path)


async def _records(redis_url: str, ids: list[str]) -> list[Record]:
    redis = redis_from_url(redis_url, Settings().redis_options)
    keys = Keys("intake")
    try:
        pipe = redis.pipeline(transaction=False)
        for sub_id in ids:
            pipe.hgetall(keys.sub(sub_id))
        return [Record.from_hash(raw) for raw in await pipe.execute() if raw]
    finally:
        await redis.aclose()


async def _reading(redis_url: str, timeout: float = 60.0) -> None:  # noqa: ASYNC109
    """Wait until a worker waits on the stream (started: schema and organisation read)."""
    redis = redis_from_url(redis_url, Settings().redis_options)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            clients = await redis.client_list()
            if any(c["cmd"] == "xreadgroup" and "b" in c["flags"] for c in clients):
                return
            await asyncio.sleep(0.05)
        raise RuntimeError(f"the worker did not start reading within {timeout}s")
    finally:
        await redis.aclose()


def _calls(log: list[dict[str, Any]], leads: int, since: float) -> dict[str, float]:
    """Answered calls per lead by the emulator's endpoint group, from ``since`` (wall clock:
    a worker's start-up reads of the organisation are not a lead's)."""
    counted = Counter(
        r["group"]
        for r in log
        if r["status"] != 429 and datetime.fromisoformat(r["wall"]).timestamp() >= since
    )
    return {group: count / max(1, leads) for group, count in sorted(counted.items())}


def speed_to_lead(
    stack: Stack, logdir: Path, *, rate: float, seconds: float, latencies: tuple[float, ...]
) -> list[dict[str, Any]]:
    runs = []
    with Procs(logdir) as procs:
        redis_url = procs.redis()
        close_url, emu_port = procs.emulator(org=BENCH / "team.yaml")
        _, port = stack.start_receiver(procs, redis_url)
        stack.start_worker(
            procs, redis_url, close_url, name="s2l-worker", prefix="intake", concurrency=16
        )
        asyncio.run(_reading(redis_url))
        for index, latency in enumerate(latencies):
            since = asyncio.run(emulator_prepare(emu_port, latency_ms=latency, rate_limit=None))
            posting = time.time()
            posted = asyncio.run(
                post_paced(port, rate=rate, seconds=seconds, secret=stack.secret, tag=f"s2l{index}")
            )
            asyncio.run(wait_drained(redis_url, "intake", 0, 60, posted.ids))
            records = asyncio.run(_records(redis_url, posted.ids))
            log = asyncio.run(emulator_requests(emu_port, since))
            task_ms = [
                1000 * (r.progress.steps["task"].at - r.received_at)
                for r in records
                if "task" in r.progress.steps and r.progress.steps["task"].state == "done"
            ]
            created = sum(1 for r in records if r.state == "created")
            calls = _calls(log, created, posting)
            path = sum(calls.get(group, 0.0) for group in PATH_GROUPS)
            run: dict[str, Any] = {
                "latency_ms": latency,
                "posted": posted.sent,
                "states": dict(Counter(r.state for r in records)),
                "tasks": len(task_ms),
                "p50_ms": percentile(task_ms, 50),
                "p99_ms": percentile(task_ms, 99),
                "max_ms": max(task_ms) if task_ms else float("nan"),
                "calls_on_path": path,
                "calls_per_lead": calls,
                "close_calls_per_lead": sum(calls.values()),
                "target_ms": 250.0 if latency == 0 else path * latency + 150.0,
            }
            run["met"] = run["p99_ms"] < run["target_ms"]
            runs.append(run)
            print(
                f"  Close latency {latency:3.0f} ms: receipt -> task created p50 "
                f"{run['p50_ms']:.0f} ms, p99 {run['p99_ms']:.0f} ms (target < "
                f"{run['target_ms']:.0f} ms: {'met' if run['met'] else 'NOT met'}); "
                f"{run['close_calls_per_lead']:.2f} Close calls per lead, {path:.2f} on the "
                f"path; states {run['states']}",
                flush=True,
            )
    return runs


def _limited(row: dict[str, Any]) -> dict[str, Any]:
    log = row.pop("log")
    finished = row["states"].get("created", 0) + row["states"].get("attached", 0)
    calls = _calls(log, finished, row["released"])
    leads_bound, binding = bound(calls, LIMIT)
    steady = steady_rate(row, WINDOW)
    row.pop("finished_at")
    return {
        **row,
        "calls_per_lead": calls,
        "close_calls_per_lead": sum(calls.values()),
        "groups": {group: per_group(log, group, WINDOW) for group in calls},
        "bound": leads_bound,
        "binding_group": binding,
        "steady_leads_per_s": steady,
        "ratio": steady / leads_bound,
    }


def calls_and_bound(stack: Stack, logdir: Path, *, n: int) -> dict[str, Any]:
    out: dict[str, Any] = {"limit": LIMIT, "window": WINDOW, "n": n, "processes": PROCESSES}
    with Procs(logdir) as procs:
        redis_url = procs.redis()
        emulator = procs.emulator(org=BENCH / "team.yaml")
        first: dict[str, Any] | None = None
        for people in ("new", "returning"):
            row = drain_run(
                stack,
                procs,
                redis_url,
                emulator,
                n=n,
                latency_ms=0,
                concurrency=16,
                processes=PROCESSES,
                cores="0",
                timeout=120,
                close_rate_limit=float(LIMIT),
                emulator_options={"rate_limit": LIMIT, "rate_window": WINDOW},
                keep_log=True,
                again=first,
            )
            first = first or row
            out[people] = run = _limited(row)
            calls = ", ".join(f"{g} {c:.2f}" for g, c in run["calls_per_lead"].items())
            print(
                f"  {people:<9} calls/lead: {calls} ({run['close_calls_per_lead']:.2f} in all); "
                f"bound {run['bound']:.1f} leads/s ({run['binding_group']}); "
                f"{run['steady_leads_per_s']:.1f} leads/s after the first window (ratio "
                f"{run['ratio']:.2f}); states {run['states']}",
                flush=True,
            )
    return out


def followups(stack: Stack, logdir: Path, *, quick: bool) -> dict[str, Any]:
    configured = followup_stack(stack)
    return {
        "speed_to_lead": speed_to_lead(
            configured,
            logdir,
            rate=10 if quick else 20,
            seconds=3 if quick else 10,
            latencies=(0, 50),
        ),
        "calls": calls_and_bound(configured, logdir, n=48 if quick else 160),
    }


# -- RESULTS.md -------------------------------------------------------------------------------


def _calls_text(calls: dict[str, float]) -> str:
    return ", ".join(f"{group} {count:.2f}" for group, count in calls.items())


def report_lines(section: dict[str, Any]) -> list[str]:
    """Section 7 of RESULTS.md."""
    out = [
        "The partner source with the whole follow-up (bench/followups.yaml: owner round-robin "
        "over a group of 4 reps, task, sequence, the update of a returning person's lead, "
        "opportunity and custom activity, these two on a match too, and the note) "
        "against the organisation of bench/team.yaml. Speed to lead: a paced poster, one "
        "receiver and one worker (16 tasks); receipt -> task created is the task step's time "
        "in the record less the receipt. Calls per lead: from the emulator's log, start-up "
        "reads left out.",
        "",
        "| Close latency | posted | receipt->task p50 | p99 | max | target (p99) | met "
        "| calls on the path | Close calls per lead | states |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in section["speed_to_lead"]:
        out.append(
            f"| {run['latency_ms']:g} ms | {run['posted']} | {run['p50_ms']:.0f} ms | "
            f"{run['p99_ms']:.0f} ms | {run['max_ms']:.0f} ms | < {run['target_ms']:.0f} ms | "
            f"{'yes' if run['met'] else '**no**'} | {run['calls_on_path']:.2f} | "
            f"{run['close_calls_per_lead']:.2f} | {run['states']} |"
        )
    calls = section["calls"]
    out += [
        "",
        f"Close's limit {calls['limit']} requests/s per endpoint group, {calls['processes']} "
        f"worker processes (our limiter at the limit), {calls['n']} people, new then "
        "returning; the bound is min over groups of limit / calls per lead:",
        "",
        "| people | calls per lead, by group | in all | bound leads/s (group) "
        "| leads/s after the 1st window | ratio | states |",
        "|---|---|---|---|---|---|---|",
    ]
    for people in ("new", "returning"):
        run = calls[people]
        out.append(
            f"| {people} | {_calls_text(run['calls_per_lead'])} | "
            f"{run['close_calls_per_lead']:.2f} | {run['bound']:.1f} ({run['binding_group']}) | "
            f"{run['steady_leads_per_s']:.1f} | {run['ratio']:.2f} | {run['states']} |"
        )
    return out


def target_rows(section: dict[str, Any]) -> list[tuple[str, str, bool | None, str]]:
    rows: list[tuple[str, str, bool | None, str]] = []
    for run in section.get("speed_to_lead", []):
        latency = run["latency_ms"]
        what = (
            "under 250 ms"
            if latency == 0
            else f"under calls on the path x latency + 150 ms = {run['target_ms']:.0f} ms"
        )
        rows.append(
            (
                f"Speed to lead p99 at Close latency {latency:g} ms {what}",
                f"p99 {run['p99_ms']:.0f} ms (p50 {run['p50_ms']:.0f} ms)",
                bool(run["met"]),
                "speed_to_lead",
            )
        )
    new = section.get("calls", {}).get("new")
    if new:
        rows.append(
            (
                "With the follow-ups, the workers keep to Close's limit: leads/s <= the bound",
                f"{new['steady_leads_per_s']:.1f} leads/s, bound {new['bound']:.1f} "
                f"({new['close_calls_per_lead']:.2f} calls per new lead)",
                new["steady_leads_per_s"] <= new["bound"] * 1.05,
                "followup_bound",
            )
        )
    return rows
