"""Processes for reliability tests: a private redis-server with AOF, the Close emulator, and
``lead-intake serve`` / ``worker`` processes, each with its log file, each stopped at the end.

Everything listens on 127.0.0.1. A :class:`Stack` is an async context manager: leaving it
stops every process it started (SIGTERM, then SIGKILL after a deadline) and removes Redis's
folder, also when the test failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
import yaml

from service.dev.redis_server import RedisServer, free_port
from tests.conftest import ROOT

# Distinctive secrets: the log checks look for them in every line the processes wrote.
CLOSE_KEY = "chaos-close-key-7f3a9c1e5b"
ADMIN_TOKEN = "chaos-admin-token-2d8e6f4a0c"
PREFIX = "chaos"
EMAIL_DOMAIN = "chaos.example"

# The permanent error deliberately injected: Close refuses a lead whose text custom field
# "External ID" holds a number (400 "Must be a string."). The mapping passes values of text
# fields through, so a partner sending ``"external_id": 42`` reaches Close and is refused.
_EXTRACT = {
    "email": "body.contact.email",
    "full_name": "body.contact.name",
    "phone": "body.contact.phone",
    "company": "body.company",
    "message": "body.message",
    "extra.external_id": "body.external_id",
}
_LEAD = {"custom": {"External ID": "extra.external_id"}}
SOURCES: dict[str, Any] = {
    "sources": {
        "chaos": {
            "kind": "webhook",
            "description": "chaos run: JSON leads; a note on the lead when the person has one",
            "default_region": "US",
            "extract": _EXTRACT,
            "lead": _LEAD,
        },
        "chaos-skip": {
            "kind": "webhook",
            "description": "chaos run: like chaos, but nothing more when the person has a lead",
            "default_region": "US",
            "extract": _EXTRACT,
            "lead": _LEAD,
            "dedup": {"on_match": "skip"},
        },
    }
}

FINAL = ("created", "attached", "skipped", "rejected", "dead")


def service_env(**settings: object) -> dict[str, str]:
    """This environment without INTAKE_/EMULATOR_ variables, plus ``settings`` as INTAKE_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INTAKE_", "EMULATOR_"))}
    env["PYTHONUNBUFFERED"] = "1"
    env.update({f"INTAKE_{k.upper()}": str(v) for k, v in settings.items()})
    return env


@dataclass
class Proc:
    """One ``lead-intake`` process, restartable; its output is appended to ``log``."""

    name: str
    args: list[str]
    env: dict[str, str]
    log: Path
    process: asyncio.subprocess.Process | None = None
    starts: int = 0
    kills: int = 0
    crashes: list[str] = field(default_factory=list)
    """Exits nobody asked for: return code and the log's tail."""
    stopping: bool = False
    cpu_seconds: float = 0.0
    """CPU time used by every run of this process so far (read before each stop or kill)."""

    def _account(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return
        self.cpu_seconds += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def start(self) -> None:
        self.starts += 1
        self.stopping = False
        with self.log.open("ab") as out:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "service.cli",
                *self.args,
                cwd=ROOT,
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def check_alive(self) -> bool:
        """False (and the crash noted) when the process exited although nobody stopped it."""
        if self.process is None or self.process.returncode is None or self.stopping:
            return True
        tail = self.log.read_text(errors="replace")[-3000:]
        self.crashes.append(f"{self.name} exited with {self.process.returncode}:\n{tail}")
        self.process = None
        return False

    async def kill(self) -> None:
        """SIGKILL: no grace, no cleanup, exactly like a node or OOM kill."""
        self.stopping = True
        self._account()
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            await self.process.wait()
            self.kills += 1
        self.process = None

    async def stop(self, within: float = 10.0) -> None:
        self.stopping = True
        self._account()
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), within)
            except TimeoutError:
                self.process.send_signal(signal.SIGKILL)
                await self.process.wait()
        self.process = None


async def wait_http(url: str, within: float = 20.0, status: int = 200) -> None:
    """Poll ``url`` until it answers ``status``."""
    deadline = time.monotonic() + within
    last: object = None
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(url) as response:
                    if response.status == status:
                        return
                    last = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                last = exc
            await asyncio.sleep(0.1)
    raise AssertionError(f"{url} did not answer {status} within {within}s (last: {last!r})")


class Emulator:
    """The Close emulator as a process, driven over its /_emulator/ HTTP API."""

    def __init__(self, workdir: Path, *, seed: int, org: Mapping[str, Any] | None = None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        extra: list[str] = []
        if org is not None:
            org_file = workdir / "emulator-org.yaml"
            org_file.write_text(yaml.safe_dump(dict(org), sort_keys=False))
            extra = ["--org", str(org_file)]
        self.proc = Proc(
            "emulator",
            [
                "emulator",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--api-key",
                CLOSE_KEY,
                "--seed",
                str(seed),
                *extra,
            ],
            service_env(),
            workdir / "emulator.log",
        )
        self.session: aiohttp.ClientSession | None = None

    @property
    def api(self) -> str:
        return f"{self.base}/api/v1"

    async def start(self) -> None:
        await self.proc.start()
        await wait_http(f"{self.base}/_emulator/config")
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))

    async def stop(self) -> None:
        if self.session is not None:
            await self.session.close()
        await self.proc.stop()

    async def _call(self, method: str, path: str, body: object = None) -> Any:
        assert self.session is not None
        async with self.session.request(method, f"{self.base}/_emulator/{path}", json=body) as r:
            answer = await r.json()
            assert r.status == 200, answer
            return answer

    async def configure(self, **options: object) -> None:
        await self._call("POST", "config", options)

    async def add_faults(self, *faults: Mapping[str, object]) -> None:
        await self._call("POST", "faults", list(faults))

    async def leads(self) -> list[dict[str, Any]]:
        return list((await self._call("GET", "leads"))["data"])

    async def config(self) -> dict[str, Any]:
        return dict(await self._call("GET", "config"))

    async def objects(self, table: str) -> list[dict[str, Any]]:
        """``tasks``, ``subscriptions``, ``opportunities``, ``activities`` or ``notes``."""
        return list((await self._call("GET", table))["data"])

    async def requests(self) -> list[dict[str, Any]]:
        return list((await self._call("GET", "requests"))["data"])


class Stack:
    """Redis (AOF, everysec), the emulator, receivers and workers, as processes."""

    def __init__(
        self,
        workdir: Path,
        *,
        receivers: int = 2,
        workers: int = 3,
        seed: int = 1,
        sources: Mapping[str, Any] = SOURCES,
        org: Mapping[str, Any] | None = None,
        **settings: object,
    ) -> None:
        self.workdir = workdir
        self.redis = RedisServer(appendonly=True)
        self.emulator = Emulator(workdir, seed=seed, org=org)
        self.sources_file = workdir / "sources.yaml"
        self.sources_file.write_text(yaml.safe_dump(dict(sources), sort_keys=False))
        base: dict[str, object] = {
            "env": "production",
            "log_level": "INFO",
            "redis_url": self.redis.url,
            "key_prefix": PREFIX,
            "close_base_url": self.emulator.api,
            "close_api_key": CLOSE_KEY,
            "admin_token": ADMIN_TOKEN,
            "sources_file": self.sources_file,
            "host": "127.0.0.1",
            "worker_http_port": 0,
            "close_rate_limit": 100000,
        }
        base.update(settings)
        self.receivers = [
            Proc(
                f"receiver-{n}",
                ["serve"],
                service_env(**{**base, "port": free_port()}),
                workdir / f"receiver-{n}.log",
            )
            for n in range(receivers)
        ]
        self.workers = [
            Proc(f"worker-{n}", ["worker"], service_env(**base), workdir / f"worker-{n}.log")
            for n in range(workers)
        ]
        self.redis_restarts = 0

    def receiver_url(self, proc: Proc) -> str:
        return f"http://127.0.0.1:{proc.env['INTAKE_PORT']}"

    @property
    def services(self) -> list[Proc]:
        return [*self.receivers, *self.workers]

    async def __aenter__(self) -> Stack:
        try:
            await asyncio.to_thread(self.redis.start)
            await self.emulator.start()
            for proc in self.services:
                await proc.start()
            for proc in self.receivers:
                await wait_http(f"{self.receiver_url(proc)}/healthz")
            # The workers create the consumer group once they read Close's schema.
            await wait_http(f"{self.receiver_url(self.receivers[0])}/readyz")
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await asyncio.gather(*(p.stop() for p in self.services), return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.emulator.stop()
        await asyncio.to_thread(self.redis.stop)

    async def restart_redis(self) -> float:
        """Stop redis-server (it writes its AOF out) and start it again on the same port and
        folder, so it reloads the AOF. Returns how long Redis was away."""
        started = time.monotonic()
        await asyncio.to_thread(self.redis.stop, remove=False)
        await asyncio.to_thread(self.redis.start)
        self.redis_restarts += 1
        return time.monotonic() - started

    def crashes(self) -> list[str]:
        return [crash for proc in self.services for crash in proc.crashes]

    def service_logs(self) -> Iterable[tuple[str, str]]:
        for proc in self.services:
            if proc.log.exists():
                yield proc.name, proc.log.read_text(errors="replace")


# -- what logs must never hold ------------------------------------------------------------------

_UNMASKED_EMAIL = re.compile(r"[A-Za-z0-9._%+-]@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_NUMBER = re.compile(r"\+?\d[\d\s().-]{5,}\d")


def leaks(text: str, *, secrets: Iterable[str], phones: Iterable[str] = ()) -> list[str]:
    """What ``text`` (log output) gives away: secrets, emails or phone numbers in the clear.

    A masked email is ``a***@example.com``, so any address whose local part does not end in
    ``*`` is in the clear. A phone is in the clear when a run of digits (with the usual
    separators) in the text is one of ``phones``, in E.164 or national digits.
    """
    found = [f"secret {s[:6]}..." for s in secrets if s and s in text]
    found += [f"email {m.group(0)!r}" for m in _UNMASKED_EMAIL.finditer(text)]
    wanted = set()
    for phone in phones:
        digits = "".join(c for c in phone if c.isdigit())
        wanted |= {digits, digits[1:]} if digits.startswith("1") else {digits}
    for match in _NUMBER.finditer(text):
        if "".join(c for c in match.group(0) if c.isdigit()) in wanted:
            found.append(f"phone {match.group(0)!r}")
    return sorted(set(found))
