"""Close's custom fields and statuses for ``check-config`` and ``map``: the organisation's, read
from Close with the API key, or without one the emulator's (``INTAKE_EMULATOR_ORG_FILE``, the
organisation ``make run`` sends leads to), read through the same client from an emulator
started for the moment on a free local port. So a file ``check-config`` passes also starts
with ``make run``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from pydantic import SecretStr

from close_emulator import EmulatorOptions, OrgFileError, create_emulator_app, options_with_org
from service.close.client import CloseClient
from service.config.settings import Settings
from service.errors import CloseError, ConfigError, ConfigIssue
from service.mapping import CloseSchema
from service.worker.mappers import fetch_schema

_KEY = "check-config"
DEFAULT_ORG = Settings.model_fields["emulator_org_file"].default


def emulator_options(settings: Settings, **given: Any) -> EmulatorOptions:
    """The emulator's options with the organisation of ``INTAKE_EMULATOR_ORG_FILE``: when that
    is the default file and there is none (another folder than the checkout), the emulator's
    built-in organisation. ConfigError naming every problem of the file."""
    path: Path | None = settings.emulator_org_file
    if "emulator_org_file" not in settings.model_fields_set and not DEFAULT_ORG.is_file():
        path = None
    try:
        return options_with_org(path, **given)
    except OrgFileError as exc:
        issues = [ConfigIssue(where, text, exc.file) for where, text in exc.problems]
        raise ConfigError(issues) from None


def organisation_name(settings: Settings) -> str:
    """Where the emulated organisation came from, for banners and reports."""
    if "emulator_org_file" in settings.model_fields_set or DEFAULT_ORG.is_file():
        return str(settings.emulator_org_file)
    return f"the emulator's built-in organisation (no {DEFAULT_ORG})"


@dataclass(frozen=True, slots=True)
class CheckedSchema:
    schema: CloseSchema
    against: str
    """What the names were checked against, for the report."""


@asynccontextmanager
async def _emulator(settings: Settings) -> AsyncIterator[str]:
    """An emulator of the org file on a free port: its API's base URL."""
    options = emulator_options(settings, api_keys=[_KEY])
    runner = web.AppRunner(create_emulator_app(options), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        yield f"http://127.0.0.1:{port}/api/v1"
    finally:
        await runner.cleanup()


async def _read(base_url: str, api_key: SecretStr, settings: Settings) -> CloseSchema:
    async with aiohttp.ClientSession() as session:
        close = CloseClient(
            session,
            base_url=base_url,
            api_key=api_key,
            timeout=settings.close_timeout_seconds,
            connect_timeout=settings.close_connect_timeout_seconds,
            attempts=2,
        )
        return await fetch_schema(close)


async def close_schema(settings: Settings) -> CheckedSchema:
    """The schema sources are checked against (ConfigError when it cannot be read)."""
    if settings.close_api_key is None:
        async with _emulator(settings) as base_url:
            schema = await _read(base_url, SecretStr(_KEY), settings)
        org = organisation_name(settings)
        where = f"the emulator's organisation {org} (make run)"
        return CheckedSchema(schema, where)
    try:
        schema = await _read(settings.close_base_url, settings.close_api_key, settings)
    except CloseError as exc:
        text = f"could not read Close's custom fields and statuses: {exc}"
        raise ConfigError([ConfigIssue("INTAKE_CLOSE_API_KEY", text)]) from None
    return CheckedSchema(schema, f"Close ({settings.close_base_url})")
