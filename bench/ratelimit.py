"""3. Close's rate limit: the leads per second it allows, and how close the workers come.

The emulator limits every endpoint group to ``LIMIT`` requests per second (per API key, as
Close does). A lead costs some calls in each group (counted from the emulator's log), so the
whole deployment can deliver at most ``min over groups of LIMIT / calls per lead`` leads per
second, however many workers run: the bound. Each configuration of our limiter drains new
people, then the same people again (their second submission: the lead cache knows them).

Leads/s for the ratio is taken after the first window: every bucket (Close's and ours) starts
full, so the first second carries a burst no steady rate has; the whole run's rate is shown
beside it.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.drain import CLOSE_GROUPS, cpu_bound_drain
from bench.procs import Procs
from bench.stack import Stack

LIMIT = 20
WINDOW = 1.0
PROCESSES = 3
CONFIGURATIONS = (("ours_at_limit", float(LIMIT)), ("ours_off", 100_000.0))
"""Our limiter set to Close's limit (how a deployment is meant to be configured), then off
(only Close's 429s and ``RateLimit`` headers hold the workers back)."""


def per_group(log: list[dict[str, Any]], group: str, window: float) -> dict[str, Any]:
    """Achieved accepted rate and 429s of one endpoint group after the first window."""
    entries = [r for r in log if r["group"] == group]
    if not entries:
        return {"requests": 0}
    start = min(r["monotonic"] for r in entries)
    end = max(r["monotonic"] for r in entries)
    after = [r for r in entries if r["monotonic"] >= start + window]
    ok_after = [r for r in after if r["status"] != 429]
    span = end - (start + window)
    buckets: dict[int, int] = defaultdict(int)
    for r in entries:
        if r["status"] != 429:
            buckets[int(r["monotonic"] - start)] += 1
    return {
        "requests": len(entries),
        "accepted_rate": len(ok_after) / span if span > 0 else 0.0,
        "status_429_total": sum(1 for r in entries if r["status"] == 429),
        "status_429_after_first_window": sum(1 for r in after if r["status"] == 429),
        "seconds": span,
        "per_second": [buckets[i] for i in range(int(end - start) + 1)],
    }


def bound(calls_per_lead: dict[str, float], limit: float) -> tuple[float, str]:
    """``(leads/s, the group that sets it)``: min over groups of limit / calls per lead."""
    used = {group: calls for group, calls in calls_per_lead.items() if calls > 0}
    if not used:
        return float("inf"), "-"
    group = max(used, key=used.__getitem__)
    return limit / used[group], group


def steady_rate(row: dict[str, Any], window: float) -> float:
    """Leads finished per second after the first window of the drain."""
    start = row["released"] + window
    times = [t for t in row["finished_at"] if t >= start]
    span = (times[-1] - start) if times else 0.0
    return len(times) / span if span > 0 else 0.0


def late_429s(run: dict[str, Any]) -> int:
    """429s after the first window, in every group."""
    return sum(g.get("status_429_after_first_window", 0) for g in run["groups"].values())


def _run(row: dict[str, Any], limit: float, window: float) -> dict[str, Any]:
    log = row.pop("log")
    leads_bound, binding = bound(row["calls_per_lead"], limit)
    steady = steady_rate(row, window)
    row.pop("finished_at")
    return {
        **row,
        "groups": {g: per_group(log, g, window) for g in CLOSE_GROUPS},
        "bound": leads_bound,
        "binding_group": binding,
        "steady_leads_per_s": steady,
        "ratio": steady / leads_bound,
    }


def rate_limit(stack: Stack, logdir: Path, *, quick: bool) -> dict[str, Any]:
    """Section 3: ``PROCESSES`` worker processes of 16 tasks on core 0, Close latency 0."""
    n = 60 if quick else 300
    out: dict[str, Any] = {"limit": LIMIT, "window": WINDOW, "n": n, "processes": PROCESSES}
    with Procs(logdir) as procs:
        redis_url = procs.redis()
        emulator = procs.emulator()
        for label, ours in CONFIGURATIONS:
            runs: dict[str, Any] = {"ours": ours}
            first: dict[str, Any] | None = None
            for people in ("new", "returning"):
                row = cpu_bound_drain(
                    stack,
                    procs,
                    redis_url,
                    emulator,
                    n=n,
                    processes=PROCESSES,
                    cores="0",
                    timeout=90,
                    close_rate_limit=ours,
                    emulator_options={"rate_limit": LIMIT, "rate_window": WINDOW},
                    keep_log=True,
                    again=first,
                )
                first = first or row
                runs[people] = run = _run(row, LIMIT, WINDOW)
                calls = ", ".join(f"{g} {c:.2f}" for g, c in run["calls_per_lead"].items())
                late = late_429s(run)
                print(
                    f"  {label:<14} {people:<9} calls/lead: {calls}; bound "
                    f"{run['bound']:5.1f} leads/s ({run['binding_group']}); "
                    f"{run['steady_leads_per_s']:5.1f} leads/s after the first window "
                    f"(ratio {run['ratio']:.2f}; whole run {run['leads_per_s']:.1f}); "
                    f"429s after the first window {late}; states {run['states']}",
                    flush=True,
                )
            out[label] = runs
    return out
