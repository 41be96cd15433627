"""Close's custom fields and statuses for ``check-config`` and ``map``, and the users, groups,
sequences, sender accounts, pipelines and custom activity types the follow-ups name: the
organisation's, read from Close with the API key, or without one the emulator's
(``INTAKE_EMULATOR_ORG_FILE``, the organisation ``make run`` sends leads to), read through the
same client from an emulator started for the moment on a free local port. So a file
``check-config`` passes also starts with ``make run``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from pydantic import SecretStr

from close_emulator import EmulatorOptions, OrgFileError, create_emulator_app, options_with_org
from service.close.client import CloseClient
from service.close.directory import Directory, Needs, fetch_directory
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
    directory: Directory = field(default_factory=Directory)
    """The users, groups, sequences... the follow-ups name (what ``needs`` asked for)."""
    lead: dict[str, Any] | None = None
    """The lead asked for (``map --lead``), as Close holds it."""


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


async def _read(
    base_url: str, api_key: SecretStr, settings: Settings, needs: Needs, lead_id: str | None
) -> tuple[CloseSchema, Directory, dict[str, Any] | None]:
    async with aiohttp.ClientSession() as session:
        close = CloseClient(
            session,
            base_url=base_url,
            api_key=api_key,
            timeout=settings.close_timeout_seconds,
            connect_timeout=settings.close_connect_timeout_seconds,
            attempts=2,
        )
        schema = await fetch_schema(close)
        directory = await fetch_directory(close, needs) if needs else Directory()
        lead = await close.get_lead(lead_id) if lead_id else None
        return schema, directory, lead


async def close_schema(
    settings: Settings, needs: Needs | None = None, *, lead_id: str | None = None
) -> CheckedSchema:
    """The schema sources are checked against, and the parts of the organisation ``needs``
    names (ConfigError when they cannot be read)."""
    needs = needs or Needs()
    if settings.close_api_key is None:
        if lead_id:
            text = "reading a lead needs INTAKE_CLOSE_API_KEY (or give the lead as a file)"
            raise ConfigError([ConfigIssue("--lead", text)])
        async with _emulator(settings) as base_url:
            schema, directory, _ = await _read(base_url, SecretStr(_KEY), settings, needs, None)
        org = organisation_name(settings)
        where = f"the emulator's organisation {org} (make run)"
        return CheckedSchema(schema, where, directory)
    try:
        schema, directory, lead = await _read(
            settings.close_base_url, settings.close_api_key, settings, needs, lead_id
        )
    except CloseError as exc:
        text = f"could not read Close's custom fields, statuses or follow-up objects: {exc}"
        raise ConfigError([ConfigIssue("INTAKE_CLOSE_API_KEY", text)]) from None
    return CheckedSchema(schema, f"Close ({settings.close_base_url})", directory, lead)
