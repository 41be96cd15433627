"""Instructions per accepted request at the door, counted by valgrind: a figure that stays put
on a busy box, for comparing two versions of the receiver.

``python -m bench.doorcost [--requests N] [--root PATH]`` starts a private Redis, then
``lead-intake serve`` (and the naive "aiohttp + one XADD" baseline of ``bench/baselines.py``)
under ``valgrind --tool=callgrind``, sends a warm-up, zeroes the counters
(``callgrind_control``), sends N requests over 32 keep-alive connections and dumps the
counters: the instructions the process executed in user space (``Ir``: the interpreter, the C
extensions; not the kernel's work in system calls, so the naive handler, which spends more of
its time there, looks cheaper than its CPU time says) divided by N. Wall-clock time and even
CPU time swing with what else the box runs; the instruction count barely moves (group-commit
batch sizes and background timers vary a little).

Signed JSON webhooks to the ``partner`` source and form posts to ``website`` (the bench's
sources file, ``bench/stack.py``); the baseline gets the JSON requests. Every request is a new
delivery of a new person, and every answer must be 202. ``--root`` runs the service from another
checkout (``python -m`` imports it from its working folder), e.g. a worktree of the commit
before a change: ``git worktree add --detach /tmp/before <commit>``.

Everything listens on and loads 127.0.0.1 only; the requests are bounded in count and the run
in time (``--timeout``), and every process is stopped when it ends.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from bench import payloads
from bench.procs import LOAD_CORE, PYTHON, ROOT, SERVER_CORE, Procs, service_env
from bench.stack import Stack
from service.dev.redis_server import free_port

CONNECTIONS = 32
START_TIMEOUT = 300.0
"""Seconds the service gets to start under valgrind (imports run about 20x slower)."""


def _valgrind(out: Path) -> list[str]:
    binary = shutil.which("valgrind")
    if binary is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    return [
        binary, "--tool=callgrind", f"--callgrind-out-file={out}.%p",
    ]  # fmt: skip


def _control(pid: int, *args: str) -> None:
    subprocess.run(
        ["callgrind_control", *args, str(pid)], check=True, capture_output=True, timeout=120
    )


def _dumped(prefix: Path, pid: int, before: set[Path], within: float = 60.0) -> int:
    """The instruction total of the dump that appeared after ``before``."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        new = set(prefix.parent.glob(f"{prefix.name}.{pid}.*")) - before
        for path in new:
            match = re.search(r"^summary: (\d+)", path.read_text(errors="replace"), re.M)
            if match:
                return int(match.group(1))
        time.sleep(0.2)
    raise RuntimeError(f"callgrind wrote no dump for {pid} within {within} s")


def _requests(kind: str, tag: str, start: int, count: int, secret: str) -> list[bytes]:
    """``count`` distinct requests of ``kind`` (``json``: signed webhooks; ``form``)."""
    now = int(time.time())
    out = []
    for index in range(start, start + count):
        if kind == "json":
            body = payloads.webhook_body(tag, index)
            headers = {"Content-Type": "application/json"}
            headers |= payloads.signed_headers(secret, tag, index, body, now)
            target = f"/hooks/{payloads.WEBHOOK_SOURCE}"
        else:
            body = payloads.form_body(tag, index)
            headers = {
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/json",
            }
            target = f"/hooks/{payloads.FORM_SOURCE}"
        out.append(payloads.raw_request("127.0.0.1", target, headers, body))
    return out


async def _post_all(port: int, requests: list[bytes], within: float) -> Counter[str]:
    """Send every request once over :data:`CONNECTIONS` keep-alive connections, each waiting
    for its answer before the next, all within ``within`` seconds; the answers' statuses."""
    pending = iter(requests)
    statuses: Counter[str] = Counter()

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for raw in pending:
                writer.write(raw)
                await writer.drain()
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                statuses[head.split(b" ", 2)[1].decode()] += 1
        finally:
            writer.close()

    async with asyncio.timeout(within):
        await asyncio.gather(*(connection() for _ in range(CONNECTIONS)))
    return statuses


def _count(
    pid: int,
    prefix: Path,
    port: int,
    make: Callable[[int, int], list[bytes]],
    *,
    warmup: int,
    requests: int,
    timeout: float,
) -> tuple[float, Counter[str]]:
    """Instructions per request of ``requests`` requests after ``warmup`` uncounted ones."""
    asyncio.run(_post_all(port, make(0, warmup), timeout))
    run = make(warmup, requests)  # made now: signed timestamps stay fresh
    before = set(prefix.parent.glob(f"{prefix.name}.{pid}.*"))
    _control(pid, "--zero")
    statuses = asyncio.run(_post_all(port, run, timeout))
    _control(pid, "--dump")
    return _dumped(prefix, pid, before) / requests, statuses


def measure(
    root: Path, requests: int, warmup: int, timeout: float, baseline: bool
) -> dict[str, tuple[float, Counter[str]]]:
    results: dict[str, tuple[float, Counter[str]]] = {}
    workdir = Path(tempfile.mkdtemp(prefix="doorcost-"))
    stack = Stack.create(workdir)
    with Procs(workdir) as procs:
        redis_url = procs.redis()
        env = {"PYTHONHASHSEED": "0"}
        port = free_port()
        prefix = workdir / "callgrind.receiver"
        argv = [*_valgrind(prefix), PYTHON, "-m", "service.cli", "serve"]
        receiver = procs.start(
            "receiver",
            argv,
            cores=SERVER_CORE,
            env={**stack.env(redis_url, port=port), **env},
            cwd=root,
        )
        procs.wait_port("receiver", receiver, port, timeout=START_TIMEOUT)
        for kind in ("json", "form"):
            tag = f"dc{kind}{int(time.time())}"

            def make(start: int, count: int, kind: str = kind, tag: str = tag) -> list[bytes]:
                return _requests(kind, tag, start, count, stack.secret)

            results[kind] = _count(
                receiver.pid,
                prefix,
                port,
                make,
                warmup=warmup,
                requests=requests,
                timeout=timeout,
            )
            print(
                f"  receiver {kind}: {results[kind][0]:,.0f} instructions per request", flush=True
            )
        procs.stop(receiver)
        if baseline:
            port = free_port()
            prefix = workdir / "callgrind.xadd"
            argv = [*_valgrind(prefix), PYTHON, "-m", "bench.baselines", "xadd"]
            argv += ["--port", str(port), "--redis", redis_url, "--loop", "uvloop"]
            naive = procs.start(
                "xadd", argv, cores=SERVER_CORE, env={**service_env(), **env}, cwd=ROOT
            )
            procs.wait_port("xadd", naive, port, timeout=START_TIMEOUT)
            tag = f"dcbase{int(time.time())}"
            results["xadd"] = _count(
                naive.pid,
                prefix,
                port,
                lambda start, count: _requests("json", tag, start, count, stack.secret),
                warmup=warmup,
                requests=requests,
                timeout=timeout,
            )
            print(f"  naive xadd: {results['xadd'][0]:,.0f} instructions per request", flush=True)
    shutil.rmtree(workdir, ignore_errors=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000, help="counted requests per kind")
    parser.add_argument("--warmup", type=int, default=500, help="uncounted requests first")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout to run")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per batch of posts")
    parser.add_argument("--no-baseline", action="store_true", help="skip the naive XADD handler")
    args = parser.parse_args(argv)
    print(f"door cost of {args.root.resolve()} (server on core {SERVER_CORE}, "
          f"Redis on core {LOAD_CORE})", flush=True)  # fmt: skip
    results = measure(
        args.root.resolve(), args.requests, args.warmup, args.timeout, not args.no_baseline
    )
    bad = {kind: dict(s) for kind, (_, s) in results.items() if set(s) != {"202"}}
    if "xadd" in results:
        naive = results["xadd"][0]
        for kind in ("json", "form"):
            print(f"  naive / receiver {kind}: {naive / results[kind][0]:.3f}")
    print(f"  form / json: {results['form'][0] / results['json'][0]:.3f}")
    if bad:
        print(f"  (!) answers other than 202: {bad}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
