"""4. End-to-end latency (receipt to ``created``) at a moderate steady load, and
5. memory (RSS) of a receiver and a worker over 100,000 submissions."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from bench.intake import request_file
from bench.load import post_paced, start_wrk
from bench.procs import Procs, rss_bytes
from bench.stack import (
    Stack,
    emulator_prepare,
    final_states,
    outcomes,
    percentile,
    queue_state,
    stream_added,
    wait_drained,
)
from service.config.settings import Settings
from service.queue.connection import redis_from_url
from service.queue.records import TERMINAL_STATES


def end_to_end(
    stack: Stack, logdir: Path, *, rate: float, seconds: float, latencies: tuple[float, ...]
) -> dict[str, Any]:
    """Receiver and one worker (16 tasks) on core 0; Redis, the emulator and a paced poster
    (open loop, ``rate`` signed webhooks per second) on core 1."""
    out: dict[str, Any] = {"rate": rate, "seconds": seconds, "runs": []}
    with Procs(logdir) as procs:
        redis_url = procs.redis()
        close_url, emu_port = procs.emulator()
        _, port = stack.start_receiver(procs, redis_url)
        stack.start_worker(
            procs, redis_url, close_url, name="e2e-worker", prefix="intake", concurrency=16
        )
        for index, latency in enumerate(latencies):
            asyncio.run(emulator_prepare(emu_port, latency_ms=latency, rate_limit=None))
            posted = asyncio.run(
                post_paced(port, rate=rate, seconds=seconds, secret=stack.secret, tag=f"e2e{index}")
            )
            asyncio.run(wait_drained(redis_url, "intake", 0, 60, posted.ids))
            found = asyncio.run(outcomes(redis_url, "intake", posted.ids))
            e2e_ms = [1000 * s for s in found.end_to_end]
            run = {
                "latency_ms": latency,
                "posted": posted.sent,
                "http_statuses": {str(k): v for k, v in posted.statuses.items()},
                "http_p50_ms": percentile(posted.latencies_ms, 50),
                "http_p99_ms": percentile(posted.latencies_ms, 99),
                "poster_late_ms": posted.late_ms,
                "states": dict(found.states),
                "p50_ms": percentile(e2e_ms, 50),
                "p90_ms": percentile(e2e_ms, 90),
                "p99_ms": percentile(e2e_ms, 99),
                "max_ms": max(e2e_ms) if e2e_ms else float("nan"),
            }
            out["runs"].append(run)
            print(
                f"  Close latency {latency:3.0f} ms, {rate:g}/s for {seconds:g} s: receipt -> "
                f"created p50 {run['p50_ms']:.0f} ms  p99 {run['p99_ms']:.0f} ms  "
                f"(answer p99 {run['http_p99_ms']:.1f} ms; states {run['states']})",
                flush=True,
            )
    return out


class Sampler(threading.Thread):
    """RSS of some processes, and the queue's progress, once a second."""

    def __init__(self, pids: dict[str, int], redis_url: str, interval: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.redis_url = redis_url
        self.interval = interval
        self.samples: list[dict[str, Any]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        asyncio.run(self._loop())

    async def _loop(self) -> None:
        redis = redis_from_url(self.redis_url, Settings().redis_options)
        started = time.monotonic()
        try:
            while not self.stopping.is_set():
                state = await queue_state(redis, "intake")
                sample: dict[str, Any] = {
                    "t": time.monotonic() - started,
                    "accepted": state["added"],
                    "processed": state["added"] - state["length"],
                }
                for name, pid in self.pids.items():
                    try:
                        sample[name] = rss_bytes(pid)
                    except psutil.NoSuchProcess:
                        sample[name] = None
                self.samples.append(sample)
                await asyncio.sleep(self.interval)
        finally:
            await redis.aclose()


def _rss_summary(samples: list[dict[str, Any]], name: str, progress: str, warm: int) -> dict:
    values = [(s[progress], s[name]) for s in samples if s.get(name)]
    if not values:
        return {}
    after_warm = next((rss for done, rss in values if done >= warm), values[-1][1])
    mib = 1024 * 1024
    return {
        "start_mib": values[0][1] / mib,
        "after_warmup_mib": after_warm / mib,
        "peak_mib": max(rss for _, rss in values) / mib,
        "end_mib": values[-1][1] / mib,
        "growth_after_warmup_mib": (values[-1][1] - after_warm) / mib,
    }


def memory(
    stack: Stack, logdir: Path, *, n: int, timeout: float, warmup_fraction: float = 0.1
) -> dict[str, Any]:
    """N submissions posted by wrk (closed loop, 32 connections) to one receiver while one
    worker (64 tasks) drains them into the emulator at latency 0; RSS sampled every second.
    Nothing pinned: receiver, worker, Redis, emulator and wrk share the box. The whole run is
    bounded by ``timeout``: the worker handles what it can in that time (about 400 leads/s
    here), so over a short bound it sees fewer than N submissions; RESULTS.md says how many."""
    out: dict[str, Any] = {"n": n, "timeout": timeout}
    with Procs(logdir) as procs:
        redis_url = procs.redis(cores="0,1")
        close_url, emu_port = procs.emulator(cores="0,1")
        asyncio.run(emulator_prepare(emu_port, latency_ms=0, rate_limit=None))
        receiver, port = stack.start_receiver(procs, redis_url, cores="0,1")
        worker, _ = stack.start_worker(
            procs,
            redis_url,
            close_url,
            name="mem-worker",
            prefix="intake",
            concurrency=64,
            cores="0,1",
        )
        file, _ = request_file(stack, "memory", "json", n, "mem")
        sampler = Sampler({"receiver": receiver.pid, "worker": worker.pid}, redis_url)
        sampler.start()
        started = time.monotonic()
        try:
            # wrk's main thread sleeps out its -d even when the request file is used up: stop
            # it once the receiver has stored all N (or the time bound is near).
            posting = start_wrk(
                port, file, count=n, wrap=False, seconds=timeout, connections=32, cores="0,1"
            )
            try:
                while posting.poll() is None and time.monotonic() - started < timeout - 5:
                    seen = [x["accepted"] for x in sampler.samples[-4:]]
                    if seen and (seen[-1] >= n or (len(seen) == 4 and len(set(seen)) == 1)):
                        break  # all stored, or nothing new for 3 s (the file is used up)
                    time.sleep(0.2)
            finally:
                posting.kill()
                posting.communicate()
            intake_seconds = time.monotonic() - started
            left = max(5.0, timeout - intake_seconds)
            stored = asyncio.run(stream_added(redis_url, "intake"))
            drained = asyncio.run(wait_drained(redis_url, "intake", stored, left))
        finally:
            sampler.stopping.set()
            sampler.join(timeout=5)
        states = asyncio.run(final_states(redis_url, "intake"))
        samples = sampler.samples
        # Final counts from the records (the last sample may be up to a second old).
        accepted = sum(states.values())
        processed = sum(v for k, v in states.items() if k in TERMINAL_STATES)
        out.update(
            {
                "accepted": accepted,
                "processed": processed,
                "drained": drained,
                "states": dict(states),
                "intake_seconds": intake_seconds,
                "total_seconds": time.monotonic() - started,
                "samples": samples,
                "receiver": _rss_summary(samples, "receiver", "accepted", int(n * warmup_fraction)),
                "worker": _rss_summary(samples, "worker", "processed", int(n * warmup_fraction)),
            }
        )
        for name in ("receiver", "worker"):
            s = out[name]
            if s:
                print(
                    f"  {name:<8} RSS start {s['start_mib']:.0f} MiB, after warm-up "
                    f"{s['after_warmup_mib']:.0f}, peak {s['peak_mib']:.0f}, end "
                    f"{s['end_mib']:.0f} "
                    f"(growth after warm-up {s['growth_after_warmup_mib']:+.1f})",
                    flush=True,
                )
        print(
            f"  {accepted} accepted in {intake_seconds:.0f} s, {processed} processed in "
            f"{out['total_seconds']:.0f} s{'' if drained else ' (time bound reached first)'}",
            flush=True,
        )
    return out
