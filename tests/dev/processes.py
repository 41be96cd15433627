"""A local stack started as a user starts it (`make run`, `lead-intake dev`): its own process
group, the banner read from standard error, stopped with SIGTERM like Ctrl-C would."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Mapping
from pathlib import Path


def clean_env(**values: str) -> dict[str, str]:
    """This environment without any INTAKE_/EMULATOR_ setting or virtualenv, plus ``values``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INTAKE_", "EMULATOR_"))}
    for name in ("VIRTUAL_ENV", "MAKEFLAGS"):
        env.pop(name, None)
    return {**env, **values}


async def start(*command: str, cwd: Path, env: Mapping[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *command,
        cwd=cwd,
        env=dict(env),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )


async def read_until(
    process: asyncio.subprocess.Process, prefix: str, log: list[str], within: float
) -> None:
    """Read standard error into ``log`` until a line starts with ``prefix``."""
    assert process.stderr is not None
    while True:
        line = (await asyncio.wait_for(process.stderr.readline(), within)).decode()
        assert line, f"the process ended before a {prefix!r} line:\n" + "".join(log)
        log.append(line)
        if line.startswith(prefix):
            return


async def stop(process: asyncio.subprocess.Process) -> None:
    """SIGTERM to the whole group (make, lead-intake, redis-server); SIGKILL after 20 s."""
    if process.returncode is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), 20)
    except TimeoutError:
        os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
