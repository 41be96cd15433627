"""``lead-intake dev``: receiver and worker in one process, with local stand-ins.

With no ``INTAKE_REDIS_URL`` a private ``redis-server`` is started (temporary folder, free port)
and stopped on exit. With no ``INTAKE_CLOSE_API_KEY`` leads go to the built-in Close emulator,
and the start-up banner says so loudly.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import signal
import sys
from contextlib import AsyncExitStack, suppress

from aiohttp import web
from pydantic import SecretStr

from close_emulator import EmulatorOptions, create_emulator_app
from service.config.settings import Settings
from service.config.sources import Sources
from service.dev.redis_server import RedisServer, free_port
from service.logs import AccessLogger
from service.queue.connection import redis_from_url
from service.receiver.app import create_app
from service.worker.runtime import open_worker

logger = logging.getLogger(__name__)

EMULATOR_KEY = "dev-emulator-key"


async def _serve(app: web.Application, host: str, port: int, stack: AsyncExitStack) -> None:
    runner = web.AppRunner(app, access_log_class=AccessLogger)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    await web.TCPSite(runner, host, port).start()


async def run_dev(settings: Settings, sources: Sources, *, emulator_port: int = 8081) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    lines: list[str] = []
    async with AsyncExitStack() as stack:
        updates: dict[str, object] = {}
        if not settings.redis_url:
            server = RedisServer()
            await asyncio.to_thread(server.start)
            stack.callback(server.stop)
            updates["redis_url"] = server.url
            lines.append(
                f"Redis:    private redis-server at {server.url} (data is thrown away on exit)"
            )
        else:
            lines.append("Redis:    INTAKE_REDIS_URL")
        if settings.close_api_key is None:
            port = emulator_port or free_port()
            emulator = create_emulator_app(EmulatorOptions(api_keys=[EMULATOR_KEY]))
            await _serve(emulator, "127.0.0.1", port, stack)
            base = f"http://127.0.0.1:{port}"
            updates["close_base_url"] = f"{base}/api/v1"
            updates["close_api_key"] = SecretStr(EMULATOR_KEY)
            lines.append(
                "Close:    NO INTAKE_CLOSE_API_KEY SET - leads go to the built-in Close "
                "EMULATOR, not to Close"
            )
            lines.append(f"          see them at {base}/ (JSON: {base}/_emulator/leads)")
        else:
            lines.append(f"Close:    {settings.close_base_url}")
        if not settings.admin_tokens:
            updates["admin_token"] = SecretStr(secrets.token_urlsafe(18))
        settings = settings.model_copy(update=updates)
        redis = redis_from_url(settings.redis_url or "", settings.redis_options)
        stack.push_async_callback(redis.aclose)
        await _serve(
            create_app(settings, sources, redis=redis), settings.host, settings.port, stack
        )
        # A token made up for this run is shown so it can be used; one the user set is not.
        token = settings.admin_tokens[0] if "admin_token" in updates else "$INTAKE_ADMIN_TOKEN"
        host = "localhost" if settings.host in ("0.0.0.0", "::") else settings.host  # noqa: S104
        lines[:0] = [
            f"Lead Intake (dev) listening on http://{host}:{settings.port}",
            f"Sources:  {', '.join(sources.names())}  ->  POST /hooks/<source>",
        ]
        lines.append(
            f'Records:  curl -H "Authorization: Bearer {token}" '
            f"http://{host}:{settings.port}/v1/submissions/<id>"
        )
        print("\n".join(lines), file=sys.stderr, flush=True)
        worker_cm = open_worker(settings, sources, redis=redis)
        worker = await stack.enter_async_context(worker_cm)
        task = asyncio.create_task(worker.run(), name="worker")
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
        print("stopping...", file=sys.stderr, flush=True)
        worker.stop()
        waiter.cancel()
        with suppress(asyncio.CancelledError):
            await task
