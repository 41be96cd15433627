"""Profiles of the hot paths with py-spy (``python -m bench.run --profile``).

py-spy starts the service process itself (attaching to a running one is refused in some
sandboxes), samples it without stopping it and writes collapsed stacks when the process exits;
:func:`summarize` turns them into the top functions by own and by cumulative samples.
Idle samples (a thread waiting in epoll) are left out, so percentages are of busy CPU time.
Under uvloop the loop itself is C: its own work shows as samples whose innermost Python frame
is ``Runner.run``.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import psutil

from bench.procs import Procs

RATE = 250
# A stack is the steady state when it runs inside the event loop: asyncio's own loop, or a
# loop in C (uvloop) under ``asyncio.Runner.run``, where py-spy sees no loop frame at all.
_LOOPS = ("BaseEventLoop._run_once", "Runner.run")
_LINE = re.compile(r"^(.*) (\d+)$")
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _py_spy() -> str | None:
    """py-spy on PATH, or beside this Python (a venv's bin/ that is not on PATH)."""
    return shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))


def available() -> bool:
    return _py_spy() is not None


def wrapper(raw: Path, inner_cores: str) -> list[str]:
    """Prefix for a service command: py-spy (on the caller's cores) samples it; the service
    itself runs on ``inner_cores``."""
    binary = _py_spy() or "py-spy"
    return [
        binary, "record", "--format", "raw", "--rate", str(RATE), "--output", str(raw),
        "--", "taskset", "-c", inner_cores,
    ]  # fmt: skip


def stop_profiled(procs: Procs, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Stop the profiled service (SIGTERM to it alone) so py-spy writes its file, then py-spy."""
    for child in psutil.Process(process.pid).children(recursive=True):
        child.send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=timeout)
    procs.stop(process)


def _function(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match.group("file")
    for marker in ("site-packages/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    path = re.sub(r"^.*?/(service|bench)/", r"\1/", path)
    return f"{match.group('func')} ({path})"


DOOR_PARTS = (
    ("store: the script's keys and arguments, the envelope's JSON, the history (Intake)",
     ("Intake.", "Envelope.to_json", "history_event")),
    ("store: the batch written, its replies read (ScriptBatcher, redis-py's reader)",
     ("ScriptBatcher.",)),
    ("the mapping check at the door (Mapper.check: 422 for what can never map)",
     ("_check_mappable", "unmappable (service/receiver/items")),
    ("the signature (HMAC-SHA256 of the raw body, the headers)",
     ("authenticate (service/receiver/door",)),
    ("the body read, bounded in size and time", ("read_body (service/receiver/door",)),
    ("the parse (orjson; parse_qsl for forms)", ("parse_body",)),
    ("the delivery key (a header's digest; a form's body hash)", ("delivery_key",)),
    ("the submission id", ("new_submission_id",)),
    ("rate-limit buckets named, the client address", (
        "throttles (service/receiver/spam", "Door.throttles_of", "request_client", "Tokens.")),
    ("the 2xx answer (answers.accepted, aiohttp's Response)",
     ("accepted (service/receiver/answers",)),
    ("metrics (observe_http)", ("Metrics.observe_http",)),
    ("the rest of _admit (envelope, kept headers, control fields, honeypot)",
     ("_admit (service/receiver/app", "Door.controls")),
    ("the door's glue (receive, the middleware, CORS)", (
        "receive (service/receiver/app", "door_middleware", "_observed",
        "decorate (service/receiver/cors")),
)  # fmt: skip
"""The receiver's parts, each named by the functions whose samples it counts (a sample goes
to the innermost frame that names a part; one that names none is aiohttp's and the loop's)."""
OUTSIDE = "aiohttp and the event loop (HTTP parsing, routing, writing; the ceiling does this too)"


def _part(frames: list[str], parts: tuple[tuple[str, tuple[str, ...]], ...]) -> str:
    for frame in reversed(frames):
        for part, prefixes in parts:
            if frame.startswith(prefixes):
                return part
    return OUTSIDE


def summarize(
    raw: Path,
    title: str,
    top: int = 40,
    parts: tuple[tuple[str, tuple[str, ...]], ...] = (),
) -> str:
    """The top functions by own and by cumulative samples, as text; with ``parts``, first the
    share of each part (:data:`DOOR_PARTS` for the receiver)."""
    own: Counter[str] = Counter()
    cumulative: Counter[str] = Counter()
    by_part: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        match = _LINE.match(line.strip())
        if not match:
            continue
        stack, count = match.group(1), int(match.group(2))
        frames = [_function(f) for f in stack.split(";") if f and not f.startswith("process ")]
        if not any(f.startswith(_LOOPS) for f in frames):
            continue  # start-up (imports, config): not the steady state being measured
        total += count
        own[frames[-1]] += count
        if parts:
            by_part[_part(frames, parts)] += count
        for name in set(frames):
            cumulative[name] += count
    lines = [
        f"# {title}",
        f"{total} busy samples at {RATE} Hz in the event loop (start-up left out)",
        "",
    ]
    if parts:
        lines.append("## by part of the door")
        for name, count in by_part.most_common():
            lines.append(f"{100 * count / max(1, total):6.1f}%  {count:6d}  {name}")
        lines.append("")
    for label, counter in (("own", own), ("cumulative", cumulative)):
        lines.append(f"## top {top} by {label} samples")
        for name, count in counter.most_common(top):
            lines.append(f"{100 * count / max(1, total):6.1f}%  {count:6d}  {name}")
        lines.append("")
    return "\n".join(lines)
