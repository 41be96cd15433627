"""1. Receiver intake against two baselines, and 6a. intake with 1 and 2 receiver processes.

Every run: wrk on core 1 (with Redis), the server on core 0, 32 connections, a warm-up, then
a measured run bounded by time (wrk -d) and by count (the request file: each request once, so
idempotency never turns load into duplicates; wrk stops when the file is used up).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
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


def _measure_receiver(
    stack: Stack,
    port: int,
    kind: str,
    seconds: float,
    warmup: float,
    tag: str,
    pids: tuple[int, int],
) -> tuple[dict[str, Any], int, int]:
    """The warm-up's and the run's requests are distinct; returns (run, 202s of the warm-up,
    mean body size)."""
    warm_count, run_count = int(warmup * FILE_RATE), int(seconds * FILE_RATE)
    warm, _ = request_file(stack, f"{tag}-warm", kind, warm_count, tag)
    run, size = request_file(stack, f"{tag}-run", kind, run_count, tag, start=warm_count)
    warmed = run_wrk(port, warm, count=warm_count, wrap=False, seconds=warmup)
    result = _with_cpu(
        *pids, lambda: run_wrk(port, run, count=run_count, wrap=False, seconds=seconds)
    )
    if result["exhausted"]:
        # wrk's main thread sleeps out -d: the rate it reports is then too low.
        print(f"  (!) {tag}: every distinct request was used before {seconds} s", flush=True)
    return result, warmed.statuses.get("202", 0), size


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
        base_file, size = request_file(stack, "baseline", "json", base_count, "base")
        out["json_body_bytes"] = size
        # The baselines on the receiver's event loop (the comparison the targets use), and,
        # when that is uvloop, on asyncio's own loop too (what a naive handler usually runs on).
        loop = receiver_loop()
        out["event_loop"] = loop
        runs = [(kind, loop, kind) for kind in ("ceiling", "xadd")]
        if loop != "asyncio":
            runs += [(kind, "asyncio", f"{kind}_asyncio") for kind in ("ceiling", "xadd")]
        for kind, kind_loop, key in runs:
            port = free_port()
            argv = [PYTHON, "-m", "bench.baselines", kind, "--port", str(port), "--loop", kind_loop]
            proc = procs.start(
                f"baseline-{key}",
                [*argv, "--redis", redis_url],
                cores=SERVER_CORE,
                env=service_env(),
            )
            procs.wait_port(kind, proc, port)
            run_wrk(port, base_file, count=10**9, wrap=True, seconds=warmup)
            out[key] = _with_cpu(
                proc.pid,
                procs.redis_pids[redis_url],
                lambda port=port: run_wrk(port, base_file, count=10**9, wrap=True, seconds=seconds),
            )
            print(f"  {key:<16} {_summary(out[key])}", flush=True)
            procs.stop(proc)

        accepted = 0
        for kind, label in (("json", "receiver_json"), ("form", "receiver_form")):
            # A fresh receiver per kind, so that each profile holds one kind of request.
            raw = stack.workdir / f"{label}.pyspy" if profile_dir is not None else None
            wrapper = profiling.wrapper(raw, SERVER_CORE) if raw is not None else None
            proc, port = stack.start_receiver(
                procs,
                redis_url,
                name=label,
                cores=LOAD_CORE if wrapper else SERVER_CORE,
                wrapper=wrapper,
            )
            result, warm_ok, size = _measure_receiver(
                stack,
                port,
                kind,
                seconds,
                warmup,
                f"in-{kind}",
                (service_pid(proc), procs.redis_pids[redis_url]),
            )
            accepted += warm_ok + result["statuses"].get("202", 0)
            out[label] = result
            out[f"{kind}_body_bytes"] = size
            print(f"  {label:<16} {_summary(result)}", flush=True)
            if raw is not None and profile_dir is not None:
                profiling.stop_profiled(procs, proc)
                title = f"{label}: lead-intake serve under wrk, {CONNECTIONS} connections"
                (profile_dir / f"{label}.txt").write_text(
                    profiling.summarize(raw, title, parts=profiling.DOOR_PARTS)
                )
                print(f"  profile written to {profile_dir / f'{label}.txt'}", flush=True)
            else:
                procs.stop(proc)
        # Accepted means stored: every 202 (warm-ups included) has its stream entry. (A few
        # more entries than 202s: requests in flight when wrk stopped were stored, unanswered.)
        out["stored_in_stream"] = asyncio.run(stream_added(redis_url, "intake"))
        out["accepted"] = accepted
    xadd, ceiling = out["xadd"]["rps"], out["ceiling"]["rps"]
    out["ratios"] = {
        "receiver_vs_xadd": out["receiver_json"]["rps"] / xadd,
        "receiver_vs_ceiling": out["receiver_json"]["rps"] / ceiling,
        "xadd_vs_ceiling": xadd / ceiling,
        "form_vs_xadd": out["receiver_form"]["rps"] / xadd,
        "form_cpu_vs_json_cpu": out["receiver_form"]["cpu_us_per_request"]
        / out["receiver_json"]["cpu_us_per_request"],
        # What one core of each would serve (1 / CPU per request), whatever bounds the run.
        "receiver_vs_xadd_per_core": out["xadd"]["cpu_us_per_request"]
        / out["receiver_json"]["cpu_us_per_request"],
        "form_vs_xadd_per_core": out["xadd"]["cpu_us_per_request"]
        / out["receiver_form"]["cpu_us_per_request"],
    }
    if "xadd_asyncio" in out:
        out["ratios"]["receiver_vs_xadd_asyncio"] = (
            out["receiver_json"]["rps"] / out["xadd_asyncio"]["rps"]
        )
    return out


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
