"""Running the receiver as a process, and stopping it without dropping a request.

On SIGTERM (or SIGINT): ``/readyz`` starts failing at once so load balancers stop sending new
requests, the listener stays open ``drain_seconds`` for those already routed here, then it
closes and requests in flight get up to the shutdown grace to finish before the process exits.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from service.config.settings import Settings
from service.config.sources import Sources
from service.logs import AccessLogger
from service.loops import freeze_startup_heap
from service.receiver.app import create_app
from service.receiver.state import DRAINING

logger = logging.getLogger(__name__)


async def serve(settings: Settings, sources: Sources, *, stop: asyncio.Event | None = None) -> None:
    """Serve until ``stop`` is set (by SIGTERM/SIGINT when not given), then drain and exit."""
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    app = create_app(settings, sources)
    runner = web.AppRunner(
        app, access_log_class=AccessLogger, shutdown_timeout=settings.shutdown_grace_seconds
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.host, settings.port).start()
        freeze_startup_heap()
        logger.info("receiver listening on %s:%d", settings.host, settings.port)
        await stop.wait()
        app[DRAINING].set()
        logger.info(
            "stopping: /readyz fails now; closing the listener in %.0fs", settings.drain_seconds
        )
        await asyncio.sleep(settings.drain_seconds)
    finally:
        await runner.cleanup()  # stop accepting, let requests in flight finish, close Redis
        logger.info("receiver stopped")
