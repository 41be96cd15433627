"""``lead-intake dev``: receiver and worker in one process, with local stand-ins.

With no ``INTAKE_REDIS_URL`` a private ``redis-server`` is started (temporary folder, free port)
and stopped on exit. With no ``INTAKE_CLOSE_API_KEY`` leads go to the built-in Close emulator,
which emulates the organisation of ``INTAKE_EMULATOR_ORG_FILE`` on ``INTAKE_EMULATOR_PORT``,
and the start-up banner says so loudly; lead links then point at the emulator's own lead pages.
Browser redirects to pages that are not on this machine land on the service's own thank-you
page (``thanks.py``). The ports are checked before anything starts: a taken one stops the start
with one line naming the port and the setting that changes it (``ports.PortInUse``).
Thin provider payloads are then fetched from the built-in provider emulator
(``INTAKE_PROVIDER_EMULATOR_PORT``) instead of Meta, HubSpot and Calendly.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import secrets
import signal
import sys
from contextlib import AsyncExitStack, suppress

from aiohttp import web
from pydantic import SecretStr

from close_emulator import create_emulator_app
from provider_emulator import create_provider_emulator_app
from service.config.settings import Settings
from service.config.sources import Sources
from service.dev.ports import Port, PortInUse, check_free
from service.dev.redis_server import RedisServer, free_port
from service.dev.schema import emulator_options, organisation_name
from service.dev.thanks import add_thanks_routes, local_redirects
from service.logs import AccessLogger
from service.queue.connection import redis_from_url
from service.receiver.app import create_app
from service.worker.runtime import open_worker

logger = logging.getLogger(__name__)

EMULATOR_KEY = "dev-emulator-key"
RECEIVER_ACCESS = logging.getLogger("lead_intake.access")
EMULATOR_ACCESS = logging.getLogger("close_emulator.access")
PROVIDERS_ACCESS = logging.getLogger("provider_emulator.access")


async def _serve(
    app: web.Application, port: Port, stack: AsyncExitStack, access: logging.Logger
) -> None:
    runner = web.AppRunner(app, access_log_class=AccessLogger, access_log=access)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    try:
        await web.TCPSite(runner, port.host, port.port).start()
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:  # taken between the check and now
            raise PortInUse([port]) from None
        raise


PROVIDER_TOKEN = "dev-provider-token"  # noqa: S105 - the emulator's, not a secret
PROVIDERS_LINE = (
    "Providers: the built-in PROVIDER EMULATOR (Meta Graph, HubSpot CRM, Calendly) on port "
    "{port} answers hydration fetches"
)


async def _provider_emulator(port: Port, stack: AsyncExitStack, updates: dict[str, object]) -> None:
    """With the Close emulator, thin provider payloads are fetched from the provider emulator
    (its bundled fixtures), with a token it accepts for sources whose own is not set."""
    await _serve(create_provider_emulator_app(), port, stack, PROVIDERS_ACCESS)
    base = f"http://127.0.0.1:{port.port}"
    updates["meta_graph_url"] = f"{base}/meta/v25.0"
    updates["hubspot_api_url"] = f"{base}/hubspot"
    updates["calendly_api_url"] = f"{base}/calendly"
    updates["provider_emulator_token"] = SecretStr(PROVIDER_TOKEN)


def _ports(settings: Settings) -> tuple[Port, Port | None, Port | None]:
    """The receiver's port and, without an API key, the emulators' (0 chosen now: the banner
    and the redirect pages need the number before anything listens)."""
    receiver = Port(settings.host, settings.port or free_port(), "receiver", "INTAKE_PORT")
    emulator = providers = None
    if settings.close_api_key is None:
        number = settings.emulator_port or free_port()
        emulator = Port("127.0.0.1", number, "Close emulator", "INTAKE_EMULATOR_PORT")
        number = settings.provider_emulator_port or free_port()
        providers = Port("127.0.0.1", number, "provider emulator", "INTAKE_PROVIDER_EMULATOR_PORT")
    return receiver, emulator, providers


async def run_dev(settings: Settings, sources: Sources) -> None:
    receiver_port, emulator_port, provider_port = _ports(settings)
    check_free([p for p in (receiver_port, emulator_port, provider_port) if p is not None])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    host = "localhost" if settings.host in ("0.0.0.0", "::") else settings.host  # noqa: S104
    lines: list[str] = []
    async with AsyncExitStack() as stack:
        updates: dict[str, object] = {"env": "dev"}
        if not settings.redis_url:
            server = RedisServer()
            await asyncio.to_thread(server.start)
            stack.callback(server.stop)
            updates["redis_url"] = server.url
            updates["allow_volatile_redis"] = True  # its data is thrown away on exit anyway
            lines.append(
                f"Redis:    private redis-server at {server.url} (data is thrown away on exit)"
            )
        else:
            lines.append("Redis:    INTAKE_REDIS_URL")
        if emulator_port is not None:
            base = f"http://127.0.0.1:{emulator_port.port}"
            options = emulator_options(settings, api_keys=[EMULATOR_KEY], app_url=base)
            await _serve(create_emulator_app(options), emulator_port, stack, EMULATOR_ACCESS)
            updates["close_base_url"] = f"{base}/api/v1"
            updates["close_api_key"] = SecretStr(EMULATOR_KEY)
            updates["close_app_url"] = base
            lines.append(
                "Close:    NO INTAKE_CLOSE_API_KEY SET - leads go to the built-in Close "
                "EMULATOR, not to Close"
            )
            lines.append(
                f"          see them at {base}/ (JSON: {base}/_emulator/leads); organisation "
                f"from {organisation_name(settings)}"
            )
            assert provider_port is not None
            await _provider_emulator(provider_port, stack, updates)
            lines.append(PROVIDERS_LINE.format(port=provider_port.port))
        else:
            lines.append(f"Close:    {settings.close_base_url}")
        generated = not settings.admin_tokens
        if generated:
            updates["admin_token"] = SecretStr(secrets.token_urlsafe(18))
        updates["port"] = receiver_port.port
        settings = settings.model_copy(update=updates)
        receiver_base = f"http://{host}:{receiver_port.port}"
        sources, redirected = local_redirects(sources, receiver_base)
        if redirected:
            lines.append(
                f"Redirects: browser posts to {', '.join(redirected)} land on "
                f"{receiver_base}/thanks (dev only; the sources file's pages are not local)"
            )
        redis = redis_from_url(settings.redis_url or "", settings.redis_options)
        stack.push_async_callback(redis.aclose)
        app = create_app(settings, sources, redis=redis)
        add_thanks_routes(app)
        await _serve(app, receiver_port, stack, RECEIVER_ACCESS)
        lines[:0] = [
            f"Lead Intake (dev) listening on {receiver_base}",
            f"Sources:  {', '.join(sources.names())}  ->  POST /hooks/<source>",
        ]
        if generated:
            # A token made up for this run is shown so it can be used; one the user set is not.
            token = settings.admin_tokens[0]
            lines.append(f"Admin:    {receiver_base}/admin (token for this run: {token})")
            lines.append(
                f'Records:  curl -H "Authorization: Bearer {token}" '
                f"{receiver_base}/v1/submissions/<id>"
            )
        else:
            lines.append(f"Admin:    {receiver_base}/admin (log in with INTAKE_ADMIN_TOKEN)")
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
