"""1. Receiver intake against two baselines, and 6a. intake with 1 and 2 receiver processes.

Every run: wrk on core 1 (with Redis), the server on core 0, 32 connections, a warm-up, then
a measured run bounded by time (wrk -d) and by count (the request file: each request once, so
idempotency never turns load into duplicates; wrk stops when the file is used up). The naive
handler and the two receivers the targets compare take turns in rounds (:func:`_rounds`).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from bench import payloads, profiling
from bench.load import WrkResult, finish_wrk, run_wrk, start_wrk
from bench.procs import (
    LOAD_CORE,
    PYTHON,
    SERVER_CORE,
    Procs,
    core_busy_seconds,
    cpu_seconds,
    service_env,
    service_pid,
)
from bench.stack import Stack, stream_added
from service.dev.redis_server import free_port
from service.loops import uvloop_available

FILE_RATE = 12000
"""Requests per second of run time the request files hold (above the ceiling): the run ends
by time, not by running out of distinct requests."""
CONNECTIONS = 32
BOTH_CORES = "0,1"


def receiver_loop() -> str:
    """The event loop ``lead-intake serve`` runs on with the bench's settings."""
    choice = service_env().get("INTAKE_EVENT_LOOP", "auto")
    if choice == "auto":
        return "uvloop" if uvloop_available() else "asyncio"
    return choice


def request_file(
    stack: Stack, name: str, kind: str, count: int, tag: str, start: int = 0
) -> tuple[Path, int]:
    path = stack.workdir / f"{name}.req"
    size = payloads.write_request_file(
        path, kind=kind, count=count, tag=tag, host="127.0.0.1", secret=stack.secret, start=start
    )
    return path, size


def _with_cpu(pid: int, redis_pid: int, run: Callable[[], WrkResult]) -> dict[str, Any]:
    """The run's figures plus the server's CPU (microseconds per answer, share of a core),
    Redis's CPU per answer, and how busy the load's core (wrk and Redis) was."""
    before, redis_before = cpu_seconds(pid), cpu_seconds(redis_pid)
    load_before, started = core_busy_seconds(LOAD_CORE), time.monotonic()
    result = run()
    cpu = cpu_seconds(pid) - before
    redis_cpu = cpu_seconds(redis_pid) - redis_before
    load_busy = (core_busy_seconds(LOAD_CORE) - load_before) / (time.monotonic() - started)
    return {
        **result.as_dict(),
        "cpu_us_per_request": 1e6 * cpu / max(1, result.requests),
        "cpu_share": cpu / result.seconds if result.seconds else 0.0,
        "redis_cpu_us_per_request": 1e6 * redis_cpu / max(1, result.requests),
        "load_core_busy": load_busy,
    }


ROUNDS = 5
"""The naive XADD handler and the two receivers take turns, this many runs each: a box whose
speed drifts (other tenants, its clock) then slows all three alike, and the targets' ratios
are the medians of the rounds' ratios."""


def _rounds(
    stack: Stack,
    servers: list[tuple[str, int, int, str | None]],
    base_file: Path,
    *,
    seconds: float,
    warmup: float,
    redis_pid: int,
) -> dict[str, list[dict[str, Any]]]:
    """``servers`` (label, pid, port, request kind; None: the naive handler, replaying
    ``base_file``) in turns: a warm-up each, then ``ROUNDS`` runs each of ``seconds / ROUNDS``.
    A receiver's requests are distinct across every run (each a new delivery of a new person),
    so idempotency never turns load into duplicates."""
    length = seconds / ROUNDS
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label, *_ in servers}
    for turn in range(ROUNDS + 1):
        span = warmup if turn == 0 else length
        for label, pid, port, kind in servers:
            if kind is None:
                file, count, wrap = base_file, 10**9, True
            else:
                count = int(span * FILE_RATE)
                start = turn * int(max(warmup, length) * FILE_RATE)
                file, size = request_file(stack, f"{label}-{turn}", kind, count, label, start)
                wrap = False

            result = _with_cpu(
                pid,
                redis_pid,
                partial(run_wrk, port, file, count=count, wrap=wrap, seconds=span),
            )
            if result["exhausted"]:
                # wrk's main thread sleeps out -d: the rate it reports is then too low.
                print(f"  (!) {label}: every distinct request was used before {span} s", flush=True)
            result["warm_up"] = turn == 0
            if kind is not None:
                result["body_bytes"] = size
            runs[label].append(result)
    return runs


def _combined(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One server's measured rounds as one run: rates and CPU over all of them, the median
    round's p50, the worst round's p99 and max; ``rounds``: each round's figures."""
    measured = [r for r in runs if not r["warm_up"]]
    requests = sum(r["requests"] for r in measured)
    seconds = sum(r["seconds"] for r in measured)
    cpu = sum(r["cpu_us_per_request"] * r["requests"] for r in measured) / 1e6
    redis = sum(r["redis_cpu_us_per_request"] * r["requests"] for r in measured) / 1e6
    statuses: dict[str, int] = {}
    for r in measured:
        for status, n in r["statuses"].items():
            statuses[status] = statuses.get(status, 0) + n
    return {
        "requests": requests,
        "seconds": seconds,
        "rps": requests / seconds if seconds else 0.0,
        "p50_ms": statistics.median(r["p50_ms"] for r in measured),
        "p99_ms": max(r["p99_ms"] for r in measured),
        "max_ms": max(r["max_ms"] for r in measured),
        "cpu_us_per_request": 1e6 * cpu / max(1, requests),
        "cpu_share": cpu / seconds if seconds else 0.0,
        "redis_cpu_us_per_request": 1e6 * redis / max(1, requests),
        "load_core_busy": sum(r["load_core_busy"] * r["seconds"] for r in measured) / seconds,
        "statuses": statuses,
        "exhausted": any(r["exhausted"] for r in measured),
        "accepted_all_runs": sum(r["statuses"].get("202", 0) for r in runs),
        "rounds": [
            {k: r[k] for k in ("rps", "cpu_us_per_request", "cpu_share", "p99_ms")}
            for r in measured
        ],
    }


def _median_ratio(
    a: dict[str, Any], b: dict[str, Any], key: str, *, inverse: bool = False
) -> float:
    """The median over the rounds of ``a``'s ``key`` / ``b``'s (``b`` / ``a`` if inverse)."""
    pairs = zip(a["rounds"], b["rounds"], strict=True)
    return statistics.median((y[key] / x[key]) if inverse else (x[key] / y[key]) for x, y in pairs)


def _summary(r: dict[str, Any]) -> str:
    return (
        f"{r['rps']:8.0f} req/s  p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:6.2f} ms  "
        f"{r['cpu_us_per_request']:5.0f} us CPU/request ({100 * r['cpu_share']:.0f}% of a core; "
        f"Redis {r['redis_cpu_us_per_request']:.0f} us/request; load core "
        f"{100 * r['load_core_busy']:.0f}% busy; "
        f"answers {r['statuses']})"
    )


def intake(
    stack: Stack, logdir: Path, *, seconds: float, warmup: float, profile_dir: Path | None
) -> dict[str, Any]:
    """Section 1: ceiling, naive XADD, the receiver (signed JSON, then a form post)."""
    out: dict[str, Any] = {
        "seconds": seconds,
        "warmup": warmup,
        "connections": CONNECTIONS,
        "file_rate": FILE_RATE,
    }
    with Procs(logdir) as procs:
        redis_url = procs.redis()
        base_count = int((seconds + warmup) * FILE_RATE // 4)
        base_file, _ = request_file(stack, "baseline", "json", base_count, "base")
        # The ceiling, and the naive handler on asyncio's own loop (what a naive handler
        # usually runs on), each in one run, for reference; the targets' comparison (the naive
        # handler on the receiver's loop against the receiver) in rounds, below.
        loop = receiver_loop()
        out["event_loop"] = loop
        runs = [("ceiling", loop, "ceiling")]
        if loop != "asyncio":
            runs += [(kind, "asyncio", f"{kind}_asyncio") for kind in ("ceiling", "xadd")]
        for kind, kind_loop, key in runs:
            proc, port = _baseline(procs, kind, kind_loop, key, redis_url)
            run_wrk(port, base_file, count=10**9, wrap=True, seconds=warmup)
            out[key] = _with_cpu(
                proc.pid,
                procs.redis_pids[redis_url],
                lambda port=port: run_wrk(port, base_file, count=10**9, wrap=True, seconds=seconds),
            )
            print(f"  {key:<16} {_summary(out[key])}", flush=True)
            procs.stop(proc)

        naive, naive_port = _baseline(procs, "xadd", loop, "xadd", redis_url)
        servers: list[tuple[str, int, int, str | None]] = [("xadd", naive.pid, naive_port, None)]
        receivers = []
        for kind, label in (("json", "receiver_json"), ("form", "receiver_form")):
            # A receiver per kind, so that each profile holds one kind of request.
            raw = stack.workdir / f"{label}.pyspy" if profile_dir is not None else None
            wrapper = profiling.wrapper(raw, SERVER_CORE) if raw is not None else None
            proc, port = stack.start_receiver(
                procs,
                redis_url,
                name=label,
                cores=LOAD_CORE if wrapper else SERVER_CORE,
                wrapper=wrapper,
            )
            receivers.append((label, proc, raw))
            servers.append((label, service_pid(proc), port, kind))
        rounds = _rounds(
            stack,
            servers,
            base_file,
            seconds=seconds,
            warmup=warmup,
            redis_pid=procs.redis_pids[redis_url],
        )
        for label, *_ in servers:
            out[label] = _combined(rounds[label])
            print(f"  {label:<16} {_summary(out[label])}", flush=True)
        out["rounds"] = ROUNDS
        for label, proc, raw in receivers:
            if raw is not None and profile_dir is not None:
                profiling.stop_profiled(procs, proc)
                title = f"{label}: lead-intake serve under wrk, {CONNECTIONS} connections"
                (profile_dir / f"{label}.txt").write_text(
                    profiling.summarize(raw, title, parts=profiling.DOOR_PARTS)
                )
                print(f"  profile written to {profile_dir / f'{label}.txt'}", flush=True)
            else:
                procs.stop(proc)
        procs.stop(naive)
        # Accepted means stored: every 202 (warm-ups included) has its stream entry. (A few
        # more entries than 202s: requests in flight when wrk stopped were stored, unanswered.)
        out["stored_in_stream"] = asyncio.run(stream_added(redis_url, "intake"))
        out["accepted"] = sum(out[label]["accepted_all_runs"] for label, *_ in servers[1:])
        out["json_body_bytes"] = rounds["receiver_json"][0]["body_bytes"]
        out["form_body_bytes"] = rounds["receiver_form"][0]["body_bytes"]
    naive, json, form = out["xadd"], out["receiver_json"], out["receiver_form"]
    cpu = "cpu_us_per_request"
    out["ratios"] = {
        # The targets' ratios: medians of the rounds' (each round's runs minutes apart at most).
        "receiver_vs_xadd": _median_ratio(json, naive, "rps"),
        "form_vs_xadd": _median_ratio(form, naive, "rps"),
        "form_cpu_vs_json_cpu": _median_ratio(form, json, cpu),
        # What one core of each would serve (1 / CPU per request), whatever bounds the run.
        "receiver_vs_xadd_per_core": _median_ratio(json, naive, cpu, inverse=True),
        "form_vs_xadd_per_core": _median_ratio(form, naive, cpu, inverse=True),
        "receiver_vs_ceiling": json["rps"] / out["ceiling"]["rps"],
        "xadd_vs_ceiling": naive["rps"] / out["ceiling"]["rps"],
    }
    out["round_ratios"] = {
        key: [r["rps"] / x["rps"] for r, x in zip(runs["rounds"], naive["rounds"], strict=True)]
        for key, runs in (("receiver_vs_xadd", json), ("form_vs_xadd", form))
    }
    if "xadd_asyncio" in out:
        out["ratios"]["receiver_vs_xadd_asyncio"] = json["rps"] / out["xadd_asyncio"]["rps"]
    return out


def _baseline(procs: Procs, kind: str, loop: str, key: str, redis_url: str) -> tuple[Any, int]:
    """A bare aiohttp baseline (``bench/baselines.py``) on ``loop``; (process, port)."""
    port = free_port()
    argv = [PYTHON, "-m", "bench.baselines", kind, "--port", str(port), "--loop", loop]
    proc = procs.start(
        f"baseline-{key}", [*argv, "--redis", redis_url], cores=SERVER_CORE, env=service_env()
    )
    procs.wait_port(kind, proc, port)
    return proc, port


def intake_scaleout(stack: Stack, logdir: Path, *, seconds: float, warmup: float) -> dict[str, Any]:
    """Section 6a: 1 and 2 receiver processes, nothing pinned (the whole 2-core box shared by
    receivers, Redis and wrk); with 2 receivers each gets its own wrk with half the
    connections, as a load balancer would split them."""
    out: dict[str, Any] = {"seconds": seconds, "connections": CONNECTIONS}
    with Procs(logdir) as procs:
        redis_url = procs.redis(cores=BOTH_CORES)
        for processes in (1, 2):
            receivers = [
                stack.start_receiver(procs, redis_url, name=f"rx{processes}-{i}", cores=BOTH_CORES)
                for i in range(processes)
            ]
            conns = CONNECTIONS // processes
            files = []
            for i in range(processes):
                tag = f"so{processes}-{i}"
                warm, _ = request_file(stack, f"{tag}-warm", "json", int(warmup * FILE_RATE), tag)
                run, _ = request_file(
                    stack, f"{tag}-run", "json", int(seconds * FILE_RATE), tag, start=10**6
                )
                files.append((warm, run))
            for phase, length in (("warm", warmup), ("run", seconds)):
                running = [
                    start_wrk(
                        port,
                        files[i][0 if phase == "warm" else 1],
                        count=int(length * FILE_RATE),
                        wrap=False,
                        seconds=length,
                        connections=conns,
                        cores=BOTH_CORES,
                    )
                    for i, (_, port) in enumerate(receivers)
                ]
                results = [finish_wrk(p, length, conns) for p in running]
            total = sum(r.rps for r in results)
            out[str(processes)] = {
                "rps": total,
                "p50_ms": max(r.p50_ms for r in results),
                "p99_ms": max(r.p99_ms for r in results),
                "statuses": [r.statuses for r in results],
            }
            print(
                f"  {processes} receiver(s), unpinned: {total:8.0f} req/s  "
                f"p99 {out[str(processes)]['p99_ms']:.2f} ms",
                flush=True,
            )
            for proc, _ in receivers:
                procs.stop(proc)
    return out
