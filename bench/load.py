"""Load generators: wrk replaying a request file (closed loop), and a paced Python poster
(open loop) for the end-to-end run. Both bounded in count and time."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench import payloads
from bench.procs import LOAD_CORE

WRK_SCRIPT = Path(__file__).resolve().parent / "wrk" / "replay.lua"


@dataclass
class WrkResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    statuses: dict[str, int]
    socket_errors: dict[str, int]
    exhausted: bool
    connections: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def wrk_command(
    port: int, file: Path, *, count: int, wrap: bool, seconds: float, connections: int, cores: str
) -> list[str]:
    return [
        "taskset", "-c", cores,
        "wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s",
        "-s", str(WRK_SCRIPT), f"http://127.0.0.1:{port}/",
        "--", str(file), str(count), "wrap" if wrap else "stop",
    ]  # fmt: skip


def parse_wrk(output: str, connections: int) -> WrkResult:
    line = next((ln for ln in output.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no figures:\n{output[-2000:]}")
    data = json.loads(line.removeprefix("BENCH_JSON "))
    seconds = data["duration_us"] / 1e6
    lat = data["latency_us"]
    return WrkResult(
        requests=data["requests"],
        seconds=seconds,
        rps=data["requests"] / seconds if seconds else 0.0,
        p50_ms=lat["p50"] / 1000,
        p90_ms=lat["p90"] / 1000,
        p99_ms=lat["p99"] / 1000,
        max_ms=lat["max"] / 1000,
        mean_ms=lat["mean"] / 1000,
        statuses={k: int(v) for k, v in sorted(data["statuses"].items())},
        socket_errors={k: int(v) for k, v in data["errors"].items() if v},
        exhausted=bool(data["exhausted"]),
        connections=connections,
    )


def run_wrk(
    port: int,
    file: Path,
    *,
    count: int,
    wrap: bool,
    seconds: float,
    connections: int = 32,
    cores: str = LOAD_CORE,
) -> WrkResult:
    """One wrk run: at most ``seconds`` (wrk -d) and at most ``count`` answers."""
    command = wrk_command(
        port, file, count=count, wrap=wrap, seconds=seconds, connections=connections, cores=cores
    )
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr[-2000:]}")
    return parse_wrk(done.stdout, connections)


def start_wrk(
    port: int,
    file: Path,
    *,
    count: int,
    wrap: bool,
    seconds: float,
    connections: int,
    cores: str,
) -> subprocess.Popen[str]:
    """wrk in the background (several at once: one per receiver); finish with ``finish_wrk``."""
    command = wrk_command(
        port, file, count=count, wrap=wrap, seconds=seconds, connections=connections, cores=cores
    )
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def finish_wrk(process: subprocess.Popen[str], seconds: float, connections: int) -> WrkResult:
    try:
        out, err = process.communicate(timeout=seconds + 60)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"wrk failed ({process.returncode}): {err[-2000:]}")
    return parse_wrk(out, connections)


@dataclass
class PacedResult:
    sent: int
    seconds: float
    statuses: dict[int, int] = field(default_factory=dict)
    ids: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    late_ms: float = 0.0
    """How far behind its schedule the poster fell at worst (open loop kept if small)."""


async def post_paced(
    port: int, *, rate: float, seconds: float, secret: str, tag: str
) -> PacedResult:
    """POST signed webhooks at ``rate`` per second for ``seconds`` (open loop: each request
    leaves at its scheduled time whatever the answers before it did)."""
    count = int(rate * seconds)
    result = PacedResult(sent=count, seconds=seconds)
    url = f"http://127.0.0.1:{port}/hooks/{payloads.WEBHOOK_SOURCE}"

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as session:

        async def one(index: int) -> None:
            body = payloads.webhook_body(tag, index)
            headers = {"Content-Type": "application/json"}
            headers |= payloads.signed_headers(secret, tag, index, body, int(time.time()))
            started = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as response:
                answer = await response.json(content_type=None)
                result.latencies_ms.append((time.perf_counter() - started) * 1000)
                result.statuses[response.status] = result.statuses.get(response.status, 0) + 1
                if response.status == 202:
                    result.ids.append(answer["id"])

        tasks = []
        start = time.perf_counter()
        for index in range(count):
            due = start + index / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            result.late_ms = max(result.late_ms, -delay * 1000)
            tasks.append(asyncio.create_task(one(index)))
        async with asyncio.timeout(seconds + 30):
            await asyncio.gather(*tasks)
    return result
