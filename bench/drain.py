"""2. Worker throughput (latency x concurrency), 6b. drain with 1, 2 and 4 worker processes,
3. Close's rate limit.

Each run: a fresh key prefix; N distinct people preloaded with the service's own
``Queue.enqueue``; the emulator reset and set to the run's latency / rate limit; then
``lead-intake worker`` process(es) drain the stream. Throughput is measured from the records
(from the release of the entries to the last final state); CPU per lead from the worker
processes' CPU time (psutil) between the release and every entry reaching a final state.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from bench import profiling
from bench.procs import LOAD_CORE, SERVER_CORE, Procs, cpu_seconds, service_pid
from bench.stack import (
    Stack,
    emulator_prepare,
    emulator_requests,
    hold,
    outcomes,
    preload,
    release,
    wait_drained,
)

_runs = itertools.count()
CLOSE_GROUPS = ("search", "lead_write", "activity_write")
"""The emulator's endpoint groups a lead uses (2 searches, 1 create, 1 note)."""


def drain_run(
    stack: Stack,
    procs: Procs,
    redis_url: str,
    emulator: tuple[str, int],
    *,
    n: int,
    latency_ms: float,
    concurrency: int,
    jitter: float = 0.0,
    processes: int = 1,
    cores: str = SERVER_CORE,
    timeout: float = 60.0,
    close_rate_limit: float = 100_000,
    emulator_options: dict[str, Any] | None = None,
    profile: Path | None = None,
    keep_log: bool = False,
) -> dict[str, Any]:
    """One drain of ``n`` preloaded submissions; the figures of the run.

    ``jitter``: Close's latency is uniform in ``latency_ms * (1 +- jitter)`` (mean
    ``latency_ms``, which the Little's-law bound uses)."""
    close_url, emu_port = emulator
    run = next(_runs)
    prefix = f"bench{run}"
    tag = f"d{run}"
    ids = asyncio.run(preload(redis_url, prefix, tag, n))
    asyncio.run(hold(redis_url, prefix))
    spread = 2 * jitter * latency_ms
    options = {
        "latency_ms": latency_ms - spread / 2,
        "latency_jitter_ms": spread,
        "rate_limit": None,
        **(emulator_options or {}),
    }
    since = asyncio.run(emulator_prepare(emu_port, **options))
    names = [f"worker-{run}-{k}" for k in range(processes)]
    workers = []
    for k, name in enumerate(names):
        wrapper = profiling.wrapper(profile, cores) if profile is not None and k == 0 else None
        workers.append(
            stack.start_worker(
                procs,
                redis_url,
                close_url,
                name=name,
                prefix=prefix,
                concurrency=concurrency,
                cores=LOAD_CORE if wrapper else cores,
                close_rate_limit=close_rate_limit,
                wrapper=wrapper,
                wait=False,
            )
        )
    for name, (process, port) in zip(names, workers, strict=True):
        procs.wait_port(name, process, port, timeout=60)
    pids = [service_pid(process) for process, _ in workers]
    released = asyncio.run(release(redis_url, prefix, processes, timeout=60))
    cpu_before = sum(cpu_seconds(pid) for pid in pids)
    drained = asyncio.run(wait_drained(redis_url, prefix, n, timeout, ids))
    wall = time.time() - released
    cpu = sum(cpu_seconds(pid) for pid in pids) - cpu_before
    for k, (process, _) in enumerate(workers):
        if profile is not None and k == 0:
            profiling.stop_profiled(procs, process)
        else:
            procs.stop(process)
    found = asyncio.run(outcomes(redis_url, prefix, ids))
    log = asyncio.run(emulator_requests(emu_port, since))
    calls = Counter(r["group"] for r in log if r["group"] in CLOSE_GROUPS)
    created = found.states.get("created", 0)
    result: dict[str, Any] = {
        "n": n,
        "latency_ms": latency_ms,
        "latency_jitter": jitter,
        "concurrency": concurrency,
        "processes": processes,
        "drained": drained,
        "states": dict(found.states),
        "seconds": found.last_finished - released,
        "leads_per_s": created / (found.last_finished - released) if created else 0.0,
        "cpu_ms_per_lead": 1000 * cpu / max(1, n),
        "close_calls_per_lead": sum(calls.values()) / max(1, created),
        "status_429": sum(1 for r in log if r["status"] == 429),
        "wall_seconds": wall,
    }
    if latency_ms > 0:
        per_lead = result["close_calls_per_lead"] * latency_ms / 1000
        result["bound"] = processes * concurrency / per_lead if per_lead else float("inf")
        result["ratio"] = result["leads_per_s"] / result["bound"]
    if keep_log:
        result["log"] = log
    return result


LATENCY_JITTER = 0.1
"""Close's latency in the throughput runs: uniform within +-10% of the nominal latency."""


def _n_for(latency_ms: float, concurrency: int, *, quick: bool, seconds: float) -> int:
    """N for a run of about ``seconds`` at the Little's-law bound (4 Close calls per lead), in
    whole rounds of ``concurrency`` leads (a half-empty last round would lower the ratio)."""
    if latency_ms == 0:
        return 200 if quick else 1500
    bound = concurrency / (4 * latency_ms / 1000)
    rounds = max(2, min(round(bound * seconds / concurrency), 2500 // concurrency))
    return max(rounds * concurrency, 8)


def throughput(
    stack: Stack, logdir: Path, *, quick: bool, seconds: float, profile_dir: Path | None
) -> dict[str, Any]:
    """Section 2: one worker process on core 0; Redis and the emulator on core 1."""
    rows = []
    with Procs(logdir) as procs:
        redis_url = procs.redis()
        emulator = procs.emulator()
        # Profiling (--profile) runs only the profiled drain: its figures are not kept.
        matrix = [] if profile_dir is not None else itertools.product((0, 50, 200), (1, 16, 64))
        for latency, concurrency in matrix:
            n = _n_for(latency, concurrency, quick=quick, seconds=seconds)
            expected = n / (concurrency / (4 * latency / 1000)) if latency else n / 100
            row = drain_run(
                stack,
                procs,
                redis_url,
                emulator,
                n=n,
                latency_ms=latency,
                concurrency=concurrency,
                jitter=LATENCY_JITTER,
                timeout=max(30.0, 4 * expected),
            )
            rows.append(row)
            bound = (
                f"bound {row['bound']:7.1f}/s  ratio {row['ratio']:.2f}" if latency else "CPU-bound"
            )
            print(
                f"  latency {latency:3d} ms  concurrency {concurrency:2d}  N {n:5d}: "
                f"{row['leads_per_s']:7.1f} leads/s  {row['cpu_ms_per_lead']:.2f} ms CPU/lead  "
                f"{bound}  states {row['states']}",
                flush=True,
            )
        if profile_dir is not None:
            raw = stack.workdir / "worker.pyspy"
            drain_run(
                stack,
                procs,
                redis_url,
                emulator,
                n=200 if quick else 3000,
                latency_ms=0,
                concurrency=16,
                timeout=120,
                profile=raw,
            )
            title = "worker: lead-intake worker draining into the emulator, latency 0, 16 tasks"
            (profile_dir / "worker.txt").write_text(profiling.summarize(raw, title))
            print(f"  profile written to {profile_dir / 'worker.txt'}", flush=True)
    return {"rows": rows}


def scaleout(stack: Stack, logdir: Path, *, quick: bool) -> dict[str, Any]:
    """Section 6b: 1, 2 and 4 worker processes (16 tasks each), emulator latency 0, nothing
    pinned: how far the whole box goes when Close answers at once."""
    rows = []
    n = 300 if quick else 1500
    with Procs(logdir) as procs:
        redis_url = procs.redis(cores="0,1")
        emulator = procs.emulator(cores="0,1")
        for processes in (1, 2, 4):
            row = drain_run(
                stack,
                procs,
                redis_url,
                emulator,
                n=n,
                latency_ms=0,
                concurrency=16,
                processes=processes,
                cores="0,1",
                timeout=90,
            )
            rows.append(row)
            print(
                f"  {processes} worker process(es), unpinned, N {n}: "
                f"{row['leads_per_s']:7.1f} leads/s  {row['cpu_ms_per_lead']:.2f} ms CPU/lead",
                flush=True,
            )
    return {"rows": rows, "n": n}


def _per_second(log: list[dict[str, Any]], group: str, window: float) -> dict[str, Any]:
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


def rate_limit(stack: Stack, logdir: Path, *, quick: bool) -> dict[str, Any]:
    """Section 3: Close limited to 20 requests/s per endpoint group; 3 worker processes of 16
    tasks; ours set to the limit (INTAKE_CLOSE_RATE_LIMIT=20), then ours off (100000: only
    Close's 429s and RateLimit headers hold the workers back)."""
    limit, window = 20, 1.0
    n = 40 if quick else 150
    out: dict[str, Any] = {"limit": limit, "window": window, "n": n, "processes": 3}
    with Procs(logdir) as procs:
        redis_url = procs.redis()
        emulator = procs.emulator()
        for label, ours in (("ours_at_limit", float(limit)), ("ours_off", 100_000.0)):
            row = drain_run(
                stack,
                procs,
                redis_url,
                emulator,
                n=n,
                latency_ms=0,
                concurrency=16,
                processes=3,
                cores="0",
                timeout=90,
                close_rate_limit=ours,
                emulator_options={"rate_limit": limit, "rate_window": window},
                keep_log=True,
            )
            log = row.pop("log")
            groups = {g: _per_second(log, g, window) for g in CLOSE_GROUPS}
            out[label] = {**row, "ours": ours, "groups": groups}
            search = groups["search"]
            print(
                f"  {label:<14} {row['leads_per_s']:5.1f} leads/s; search "
                f"{search.get('accepted_rate', 0):5.1f} req/s accepted "
                f"({search.get('accepted_rate', 0) / limit:.2f} of the limit), 429s after the "
                f"first window: "
                + ", ".join(
                    f"{g} {groups[g].get('status_429_after_first_window', 0)}" for g in groups
                )
                + f"; states {row['states']}",
                flush=True,
            )
    return out
