"""2. Worker throughput (latency x concurrency) and against an organisation of 100,000 leads,
6b. drain with 1, 2 and 4 worker processes. (3, Close's rate limit, is ``ratelimit.py``.)

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
from collections import Counter
from pathlib import Path
from typing import Any

from bench import profiling
from bench.procs import LOAD_CORE, SERVER_CORE, Procs, cpu_seconds, service_pid
from bench.stack import (
    Stack,
    emulator_preload,
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
"""The emulator's endpoint groups a lead uses (a new person: 1 search, 1 create, 1 note)."""
CALLS_PER_NEW_LEAD = 3
FINISHED = ("created", "attached")


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
    again: dict[str, Any] | None = None,
    reset_emulator: bool = True,
) -> dict[str, Any]:
    """One drain of ``n`` preloaded submissions; the figures of the run.

    ``jitter``: Close's latency is uniform in ``latency_ms * (1 +- jitter)`` (mean
    ``latency_ms``, which the Little's-law bound uses). ``again``: the result of an earlier
    run whose people come back (same key prefix, so the lead cache knows them; new
    deliveries); the emulator keeps its leads then. ``reset_emulator``: forget the emulator's
    objects first (not when it was preloaded)."""
    close_url, emu_port = emulator
    run = next(_runs)
    prefix, tag = (again["prefix"], again["tag"]) if again else (f"bench{run}", f"d{run}")
    delivery = f"-again{run}" if again else ""
    ids = asyncio.run(preload(redis_url, prefix, tag, n, delivery))
    asyncio.run(hold(redis_url, prefix))
    spread = 2 * jitter * latency_ms
    options = {
        "latency_ms": latency_ms - spread / 2,
        "latency_jitter_ms": spread,
        "rate_limit": None,
        **(emulator_options or {}),
    }
    reset = reset_emulator and again is None
    since = asyncio.run(emulator_prepare(emu_port, reset=reset, **options))
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
    emulator_pid = procs.emulator_pids[emu_port]
    released = asyncio.run(release(redis_url, prefix, processes, timeout=60))
    cpu_before = sum(cpu_seconds(pid) for pid in pids)
    emulator_before = cpu_seconds(emulator_pid)
    drained = asyncio.run(wait_drained(redis_url, prefix, n, timeout, ids))
    wall = time.time() - released
    cpu = sum(cpu_seconds(pid) for pid in pids) - cpu_before
    emulator_cpu = cpu_seconds(emulator_pid) - emulator_before
    for k, (process, _) in enumerate(workers):
        if profile is not None and k == 0:
            profiling.stop_profiled(procs, process)
        else:
            procs.stop(process)
    found = asyncio.run(outcomes(redis_url, prefix, ids))
    log = asyncio.run(emulator_requests(emu_port, since))
    # Calls a lead needed: the answered ones (a 429 is sent again, and counted apart).
    calls = Counter(r["group"] for r in log if r["group"] in CLOSE_GROUPS and r["status"] != 429)
    finished = sum(found.states.get(state, 0) for state in FINISHED)
    result: dict[str, Any] = {
        "prefix": prefix,
        "tag": tag,
        "returning": again is not None,
        "n": n,
        "latency_ms": latency_ms,
        "latency_jitter": jitter,
        "concurrency": concurrency,
        "processes": processes,
        "drained": drained,
        "states": dict(found.states),
        "seconds": found.last_finished - released,
        "leads_per_s": finished / (found.last_finished - released) if finished else 0.0,
        "cpu_ms_per_lead": 1000 * cpu / max(1, n),
        "emulator_cpu_ms_per_lead": 1000 * emulator_cpu / max(1, n),
        "close_calls_per_lead": sum(calls.values()) / max(1, finished),
        "calls_per_lead": {g: calls.get(g, 0) / max(1, finished) for g in CLOSE_GROUPS},
        "status_429": sum(1 for r in log if r["status"] == 429),
        "wall_seconds": wall,
    }
    if latency_ms > 0:
        per_lead = result["close_calls_per_lead"] * latency_ms / 1000
        result["bound"] = processes * concurrency / per_lead if per_lead else float("inf")
        result["ratio"] = result["leads_per_s"] / result["bound"]
    if keep_log:
        result["log"] = log
        result["released"] = released
        result["finished_at"] = sorted(found.finished)
    return result


LATENCY_JITTER = 0.1
"""Close's latency in the throughput runs: uniform within +-10% of the nominal latency."""


def _n_for(latency_ms: float, concurrency: int, *, quick: bool, seconds: float) -> int:
    """N for a run of about ``seconds`` at the Little's-law bound (3 Close calls per lead), in
    whole rounds of ``concurrency`` leads (a half-empty last round would lower the ratio)."""
    if latency_ms == 0:
        return 200 if quick else 1500
    bound = concurrency / (CALLS_PER_NEW_LEAD * latency_ms / 1000)
    rounds = max(2, min(round(bound * seconds / concurrency), 2500 // concurrency))
    return max(rounds * concurrency, 8)


def cpu_bound_drain(
    stack: Stack,
    procs: Procs,
    redis_url: str,
    emulator: tuple[str, int],
    *,
    n: int,
    **options: Any,
) -> dict[str, Any]:
    """``drain_run`` with Close answering at once and 16 tasks a process: the worker
    CPU-bound, so any time Close (the emulator) or a limit adds shows."""
    return drain_run(
        stack, procs, redis_url, emulator, n=n, latency_ms=0, concurrency=16, **options
    )


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
            expected = (
                n / (concurrency / (CALLS_PER_NEW_LEAD * latency / 1000)) if latency else n / 100
            )
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
            row = cpu_bound_drain(
                stack,
                procs,
                redis_url,
                emulator,
                n=n,
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


ORG_ROUNDS = 3


def org_size(stack: Stack, logdir: Path, *, quick: bool, leads: int) -> dict[str, Any]:
    """Section 2b: the same drain (latency 0, 16 tasks: the worker CPU-bound, so any extra
    time the emulator takes per search shows) against an empty emulator and against one
    holding ``leads`` leads of other people; every drained person is new to both. Two
    emulators run side by side and the drains alternate between them, ``ORG_ROUNDS`` each,
    so that a busy neighbour on the box weighs on both alike; the medians are compared."""
    n = 300 if quick else 1500
    rounds = 1 if quick else ORG_ROUNDS
    out: dict[str, Any] = {"n": n, "preloaded_leads": leads, "rounds": rounds}
    with Procs(logdir) as procs:
        redis_url = procs.redis()
        emulators = {"empty": procs.emulator("emulator-empty"), "preloaded": procs.emulator()}
        out["preload"] = asyncio.run(emulator_preload(emulators["preloaded"][1], leads, "org"))
        print(f"  preloaded {leads:,} leads in {out['preload']['seconds']:.0f} s", flush=True)
        runs: dict[str, list[dict[str, Any]]] = {"empty": [], "preloaded": []}
        for _ in range(rounds):
            for label, emulator in emulators.items():
                row = cpu_bound_drain(
                    stack,
                    procs,
                    redis_url,
                    emulator,
                    n=n,
                    timeout=120,
                    reset_emulator=label == "empty",
                )
                runs[label].append(row)
                print(
                    f"  {label:<9} {row['leads_per_s']:7.1f} leads/s  "
                    f"{row['cpu_ms_per_lead']:.2f} ms worker CPU/lead  "
                    f"{row['emulator_cpu_ms_per_lead']:.2f} ms emulator CPU/lead  "
                    f"states {row['states']}",
                    flush=True,
                )
    for label, rows in runs.items():
        ordered = sorted(rows, key=lambda row: row["leads_per_s"])
        out[label] = {
            **ordered[len(ordered) // 2],
            "all_leads_per_s": [r["leads_per_s"] for r in rows],
        }
    out["ratio"] = out["preloaded"]["leads_per_s"] / max(1e-9, out["empty"]["leads_per_s"])
    out["emulator_cpu_ratio"] = out["preloaded"]["emulator_cpu_ms_per_lead"] / max(
        1e-9, out["empty"]["emulator_cpu_ms_per_lead"]
    )
    return out
