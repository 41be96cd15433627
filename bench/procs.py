"""Starting and stopping the processes a benchmark needs, pinned to cores, on 127.0.0.1 only.

Every process is started in its own session (process group) and registered with a
:class:`Procs`; leaving the ``with`` block stops all of them (SIGTERM to the group, SIGKILL
after a deadline), also when the benchmark failed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

import psutil

from service.dev.redis_server import free_port

PYTHON = sys.executable
ROOT = Path(__file__).resolve().parent.parent

SERVER_CORE = "0"
"""Core of the process under test (receiver, worker, baseline)."""
LOAD_CORE = "1"
"""Core of the load generator, Redis and the Close emulator."""


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def core_busy_seconds(core: str) -> float:
    """CPU seconds the core ``core`` spent busy so far (every process on it)."""
    times = psutil.cpu_times(percpu=True)[int(core)]
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def service_pid(process: subprocess.Popen[bytes]) -> int:
    """The pid of the service itself: the process, or its child when py-spy wraps it."""
    children = psutil.Process(process.pid).children(recursive=True)
    return children[-1].pid if children else int(process.pid)


def rss_bytes(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


def service_env(**settings: object) -> dict[str, str]:
    """The environment of a service process: this one without INTAKE_/EMULATOR_ variables
    (but for INTAKE_EVENT_LOOP), plus production settings, plus ``settings``
    (``redis_url=...`` → ``INTAKE_REDIS_URL``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INTAKE_", "EMULATOR_"))}
    env.update(
        {
            "INTAKE_ENV": "production",
            "INTAKE_LOG_LEVEL": "WARNING",
            "INTAKE_HOST": "127.0.0.1",
            "PYTHONUNBUFFERED": "1",
            # Kept from the caller's environment: an A/B run of the event loop.
            "INTAKE_EVENT_LOOP": os.environ.get("INTAKE_EVENT_LOOP", "auto"),
        }
    )
    for name, value in settings.items():
        key = name if name.isupper() else "INTAKE_" + name.upper()
        env[key] = str(value)
    return env


class Procs:
    """The processes of one benchmark; all stopped when the block ends."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.running: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.emulator_pids: dict[int, int] = {}
        """The pid of the emulator serving each port (for its CPU time)."""
        self.redis_pids: dict[str, int] = {}
        """The pid of each redis-server by its URL (for its CPU time)."""

    def __enter__(self) -> Procs:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        cores: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path = ROOT,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` (pinned to ``cores`` with taskset), its output in ``<name>.log``;
        ``cwd``: where it runs (``python -m`` imports the service from there)."""
        command = [*(["taskset", "-c", cores] if cores else []), *argv]
        log = (self.logdir / f"{name}.log").open("ab")
        try:
            process = subprocess.Popen(
                command,
                cwd=cwd,
                env=dict(env) if env is not None else None,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            log.close()
        self.running.append((name, process))
        return process

    def log_tail(self, name: str, lines: int = 20) -> str:
        path = self.logdir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def wait_port(
        self, name: str, process: subprocess.Popen[bytes], port: int, timeout: float = 20.0
    ) -> None:
        """Wait until ``port`` accepts connections; raise (with the log) if the process died."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited ({process.returncode}):\n{self.log_tail(name)}")
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return
            time.sleep(0.01)
        raise RuntimeError(f"{name} did not listen on {port} in {timeout}s:\n{self.log_tail(name)}")

    def stop(self, process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
        """SIGTERM to the process group, SIGKILL after ``timeout`` seconds."""
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # anything the group left behind
        self.running = [(n, p) for n, p in self.running if p is not process]

    def stop_all(self) -> None:
        for _, process in reversed(list(self.running)):
            self.stop(process)

    # -- the usual suspects ---------------------------------------------------------------

    def redis(self, name: str = "redis", cores: str | None = LOAD_CORE) -> str:
        """A private redis-server, configured like production (AOF on, fsync every second,
        no eviction), without background rewrites or snapshots during the runs. Its URL."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        port = free_port()
        folder = Path(tempfile.mkdtemp(prefix=f"{name}-data-", dir=self.logdir))
        args = [
            binary,
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--dir", str(folder),
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--auto-aof-rewrite-percentage", "0",
            "--maxmemory-policy", "noeviction",
            "--daemonize", "no",
        ]  # fmt: skip
        process = self.start(name, args, cores=cores)
        self.wait_port(name, process, port)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # the port opens before the AOF is loaded
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(64).startswith(b"+PONG"):
                    url = f"redis://127.0.0.1:{port}/0"
                    self.redis_pids[url] = process.pid  # taskset execs redis: the same pid
                    return url
            time.sleep(0.02)
        raise RuntimeError(f"{name} did not answer PING in 20s:\n{self.log_tail(name)}")

    def emulator(
        self, name: str = "emulator", cores: str | None = LOAD_CORE, **options: object
    ) -> tuple[str, int]:
        """The Close emulator (bench/emulator.py: the service's, with a preload route);
        returns ``(API base URL, port)``."""
        port = free_port()
        argv = [PYTHON, "-m", "bench.emulator", "--port", str(port)]
        for key, value in options.items():
            argv += [f"--{key.replace('_', '-')}", str(value)]
        process = self.start(name, argv, cores=cores, env=service_env())
        self.wait_port(name, process, port)
        self.emulator_pids[port] = process.pid  # taskset execs the emulator: the same pid
        return f"http://127.0.0.1:{port}/api/v1", port
