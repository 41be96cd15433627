"""``python -m bench.run``: every benchmark, then bench/RESULTS.md, results.json, results.png.

    python -m bench.run                     all sections (what ``make bench`` runs, < 10 min)
    python -m bench.run --only intake,drain some sections; merged into the existing results
    python -m bench.run --quick             tiny runs: checks the harness, figures meaningless
    python -m bench.run --profile           also py-spy profiles of the receiver and a worker
                                            (bench/profiles/*.txt); figures of profiled runs
                                            are not kept
    python -m bench.run --only memory --memory-timeout 900   the full 100,000 through a worker
    python -m bench.run --report-only       RESULTS.md and results.png again from results.json

Everything listens on 127.0.0.1; every process is stopped at the end of its section, also on
failure. See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from bench import drain, endtoend, followups, intake, profiling, ratelimit, report
from bench.procs import LOAD_CORE
from bench.stack import Stack

BENCH = Path(__file__).resolve().parent
SECTIONS = (
    "intake",
    "drain",
    "orgsize",
    "ratelimit",
    "e2e",
    "followup",
    "scaleout",
    "memory",
)


def _version(command: list[str], pattern: str) -> str:
    try:
        text = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "missing"
    match = re.search(pattern, text.stdout + text.stderr)
    return match.group(1) if match else "unknown"


def machine() -> dict[str, Any]:
    model = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as info:
        for line in info:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    import aiohttp  # noqa: PLC0415
    import redis  # noqa: PLC0415

    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "redis_server": _version(["redis-server", "--version"], r"v=(\S+)"),
        "redis_py": redis.__version__,
        "aiohttp": aiohttp.__version__,
        "wrk": _version(["wrk", "--version"], r"wrk (\S+)"),
    }


def _busy_seconds() -> float:
    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system + getattr(t, "irq", 0) + getattr(t, "softirq", 0))


def _own_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _wait_quiet(limit: float = 0.10, patience: float = 30.0) -> float:
    """Wait (up to ``patience`` seconds) until other processes use less than ``limit`` of the
    box; the share they used in the last second."""
    deadline = time.monotonic() + patience
    while True:
        busy, started = _busy_seconds(), time.monotonic()
        time.sleep(1.0)
        share = (_busy_seconds() - busy) / ((time.monotonic() - started) * (os.cpu_count() or 1))
        if share < limit or time.monotonic() > deadline:
            return share
        print(f"   waiting for a quiet box: other processes use {100 * share:.0f}%", flush=True)


def _run_section(name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one section; add its duration and how much CPU other processes on the box used
    meanwhile (a busy neighbour makes figures lower than the box can do)."""
    print(f"\n== {name} ==", flush=True)
    _wait_quiet()
    started, busy, own = time.monotonic(), _busy_seconds(), _own_seconds()
    try:
        result = fn()
    except Exception as exc:
        traceback.print_exc()
        result = {"error": f"{type(exc).__name__}: {exc}"}
    elapsed = time.monotonic() - started
    other = max(0.0, (_busy_seconds() - busy) - (_own_seconds() - own))
    result["elapsed_seconds"] = elapsed
    result["background_cpu_share"] = other / (elapsed * (os.cpu_count() or 1))
    result["ran_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    share = result["background_cpu_share"]
    note = "  (!) other processes were busy: figures are low" if share > 0.05 else ""
    print(f"-- {name}: {elapsed:.0f} s; other processes used {100 * share:.1f}% of the box{note}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", help=f"comma-separated sections: {', '.join(SECTIONS)}")
    parser.add_argument("--quick", action="store_true", help="tiny runs (harness check)")
    parser.add_argument("--profile", action="store_true", help="py-spy profiles only")
    parser.add_argument("--out", type=Path, default=BENCH, help="where results are written")
    parser.add_argument("--memory-n", type=int, default=100_000)
    parser.add_argument("--memory-timeout", type=float, default=120.0)
    parser.add_argument(
        "--org-leads", type=int, default=100_000, help="leads the emulator holds (orgsize)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="rewrite RESULTS.md and the plot from results.json",
    )
    args = parser.parse_args(argv)
    if args.report_only:
        report.write(json.loads((args.out / "results.json").read_text()), args.out)
        print(f"wrote {args.out / 'RESULTS.md'}, {args.out / 'results.png'}")
        return 0
    for tool in ("wrk", "taskset", "redis-server"):
        if shutil.which(tool) is None:
            print(f"{tool} is missing (make bench installs it)", file=sys.stderr)
            return 2
    if (os.cpu_count() or 1) < 2:
        print("the benchmarks pin processes to cores 0 and 1: need 2 cores", file=sys.stderr)
        return 2
    # The orchestrator (and the paced poster of the end-to-end run) lives with the load.
    os.sched_setaffinity(0, {int(LOAD_CORE)})
    chosen = SECTIONS if not args.only else tuple(s.strip() for s in args.only.split(","))
    unknown = set(chosen) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    if args.profile:
        if not profiling.available():
            print("py-spy is missing: pip install -e '.[bench]'", file=sys.stderr)
            return 2
        chosen = tuple(s for s in chosen if s in ("intake", "drain")) or ("intake", "drain")
    quick = args.quick
    workdir = Path(tempfile.mkdtemp(prefix="lead-intake-bench-"))
    stack = Stack.create(workdir)
    profile_dir = args.out / "profiles" if args.profile else None
    if profile_dir is not None:
        profile_dir.mkdir(parents=True, exist_ok=True)
    print(f"work folder (logs): {workdir}", flush=True)
    sections: dict[str, Callable[[], dict[str, Any]]] = {
        "intake": lambda: intake.intake(
            stack,
            workdir,
            seconds=3 if quick else 10,
            warmup=1 if quick else 2,
            profile_dir=profile_dir,
        ),
        "drain": lambda: drain.throughput(
            stack, workdir, quick=quick, seconds=2 if quick else 6, profile_dir=profile_dir
        ),
        "orgsize": lambda: drain.org_size(
            stack, workdir, quick=quick, leads=5000 if quick else args.org_leads
        ),
        "ratelimit": lambda: ratelimit.rate_limit(stack, workdir, quick=quick),
        "e2e": lambda: endtoend.end_to_end(
            stack,
            workdir,
            rate=20 if quick else 40,
            seconds=4 if quick else 15,
            latencies=(0, 50),
        ),
        "followup": lambda: followups.followups(stack, workdir, quick=quick),
        "scaleout": lambda: {
            "intake": intake.intake_scaleout(
                stack, workdir, seconds=3 if quick else 6, warmup=1 if quick else 2
            ),
            "drain": drain.scaleout(stack, workdir, quick=quick),
        },
        "memory": lambda: endtoend.memory(
            stack,
            workdir,
            n=5000 if quick else args.memory_n,
            timeout=40 if quick else args.memory_timeout,
        ),
    }
    started = time.monotonic()
    results: dict[str, Any] = {}
    failed = False
    try:
        for name in chosen:
            results[name] = _run_section(name, sections[name])
            failed |= "error" in results[name]
    finally:
        if args.keep or failed:
            print(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    total = time.monotonic() - started
    print(f"\nall sections: {total:.0f} s")
    if args.profile:
        print(f"profiles in {profile_dir}; figures of profiled runs are not written")
        return 1 if failed else 0
    command = "python -m bench.run" + (" " + " ".join(argv or sys.argv[1:])).rstrip()
    stored = args.out / "results.json"
    merged: dict[str, Any] = {}
    if args.only and stored.exists():
        merged = json.loads(stored.read_text())
    merged.setdefault("sections", {}).update(results)
    merged["machine"] = machine()
    merged["quick"] = quick
    merged["commands"] = {**merged.get("commands", {}), **dict.fromkeys(results, command)}
    merged["total_seconds"] = total if not args.only else merged.get("total_seconds", total)
    merged["written_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    args.out.mkdir(parents=True, exist_ok=True)
    stored.write_text(json.dumps(merged, indent=1, default=str) + "\n")
    report.write(merged, args.out)
    print(f"wrote {args.out / 'RESULTS.md'}, {args.out / 'results.png'}, {stored}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
