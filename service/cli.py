"""``lead-intake``: one command, several roles. The CLI only wires settings to the parts.

lead-intake dev            receiver + worker in one process, local stand-ins (make run)
lead-intake serve          the receiver (HTTP) only
lead-intake worker         the worker pool only
lead-intake emulator       the built-in Close emulator
lead-intake check-config   validate the sources file without starting
lead-intake map            show what a payload maps to, without sending anything
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import time
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import aiohttp
from aiohttp import web
from pydantic import ValidationError

from close_emulator import add_emulator_arguments, options_from_args, run_emulator
from service import __version__, tracing
from service.close.client import CloseClient
from service.config.presets import bundled_presets
from service.config.settings import Settings, load_settings
from service.config.sources import (
    Sources,
    build_mappers_issues,
    load_sources,
    read_sources_file,
    validate_sources,
)
from service.dev.stack import run_dev
from service.envelope import Envelope, new_submission_id
from service.errors import CloseError, ConfigError, ConfigIssue, MappingRejected
from service.logs import configure_logging
from service.loops import event_loop_factory, freeze_startup_heap
from service.mapping import CloseSchema, Mapper, MappingSpec, preview
from service.metrics import Metrics
from service.queue import Queue, Selection
from service.queue.connection import redis_from_url
from service.queue.records import as_state
from service.receiver.bodies import BodyError, media_type_of, parse_body
from service.receiver.server import serve
from service.times import BadTime, parse_time
from service.worker.http import create_worker_app
from service.worker.mappers import fetch_schema
from service.worker.runtime import open_worker

EXIT_CONFIG = 2
EXIT_REJECTED = 3
REPLAY_BATCH = 10_000
"""At most this many submissions per `replay --state` run (run it again for more)."""


def _fail_config(exc: ConfigError) -> int:
    print(f"configuration error ({len(exc.issues)} problem(s)):", file=sys.stderr)
    for issue in exc.issues:
        print(f"  - {issue}", file=sys.stderr)
    return EXIT_CONFIG


def _settings() -> Settings:
    try:
        return load_settings()
    except ValidationError as exc:
        issues = [
            ConfigIssue("INTAKE_" + "_".join(str(p) for p in err["loc"]).upper(), err["msg"])
            for err in exc.errors(include_url=False)
        ]
        raise ConfigError(issues) from None


_T = TypeVar("_T")


def _load(settings: Settings, path: Path | None = None) -> Sources:
    return load_sources(path or settings.sources_file)


def _run(settings: Settings, main: Coroutine[Any, Any, _T]) -> _T:
    """Run a long-lived process's main coroutine on the configured event loop."""
    with asyncio.Runner(loop_factory=event_loop_factory(settings.event_loop)) as runner:
        return runner.run(main)


def cmd_serve(settings: Settings, sources: Sources, _args: argparse.Namespace) -> int:
    if not settings.redis_url:
        raise ConfigError([ConfigIssue("INTAKE_REDIS_URL", "required for `serve`")])
    _run(settings, serve(settings, sources))
    return 0


async def _run_worker(settings: Settings, sources: Sources) -> None:
    metrics = Metrics()
    async with open_worker(settings, sources, metrics=metrics) as worker:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, worker.stop)
        runner = web.AppRunner(create_worker_app(worker, metrics), access_log=None)
        await runner.setup()
        if settings.worker_http_port:
            await web.TCPSite(runner, settings.host, settings.worker_http_port).start()
        freeze_startup_heap()
        try:
            await worker.run()
        finally:
            await runner.cleanup()


def cmd_worker(settings: Settings, sources: Sources, _args: argparse.Namespace) -> int:
    missing = [
        ConfigIssue(name, "required for `worker`")
        for name, value in (
            ("INTAKE_REDIS_URL", settings.redis_url),
            ("INTAKE_CLOSE_API_KEY", settings.close_api_key),
        )
        if not value
    ]
    if missing:
        raise ConfigError(missing)
    _run(settings, _run_worker(settings, sources))
    return 0


def cmd_dev(settings: Settings, sources: Sources, args: argparse.Namespace) -> int:
    _run(settings, run_dev(settings, sources, emulator_port=args.emulator_port))
    return 0


async def _run_emulator(args: argparse.Namespace) -> None:
    """The emulator until SIGTERM or SIGINT. As a container's PID 1 (no init) a SIGTERM would
    otherwise be ignored and the container killed only when its stop timeout runs out."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await run_emulator(options_from_args(args), args.host, args.port, stop=stop)


def cmd_emulator(args: argparse.Namespace) -> int:
    print(
        f"Close emulator on http://{args.host}:{args.port}/ (API under /api/v1/)",
        file=sys.stderr,
        flush=True,
    )
    asyncio.run(_run_emulator(args))
    return 0


async def _close_schema(settings: Settings) -> CloseSchema | None:
    """Close's schema when an API key is configured, else None (names stay unresolved)."""
    if settings.close_api_key is None:
        return None
    async with aiohttp.ClientSession() as session:
        close = CloseClient(
            session,
            base_url=settings.close_base_url,
            api_key=settings.close_api_key,
            timeout=settings.close_timeout_seconds,
            connect_timeout=settings.close_connect_timeout_seconds,
            attempts=2,
        )
        try:
            return await fetch_schema(close)
        except CloseError as exc:
            raise ConfigError(
                [
                    ConfigIssue(
                        "INTAKE_CLOSE_API_KEY",
                        f"could not read Close's custom fields and statuses: {exc}",
                    )
                ]
            ) from None


def cmd_check_config(settings: Settings, args: argparse.Namespace) -> int:
    path = args.file or settings.sources_file
    sources, issues = validate_sources(read_sources_file(path), file=str(path))
    schema = asyncio.run(_close_schema(settings))
    issues += [
        ConfigIssue(i.path, i.message, i.file or str(path))
        for i in build_mappers_issues(sources, schema)
    ]
    if issues:
        raise ConfigError(issues)
    checked = (
        "custom fields and statuses checked against Close"
        if schema
        else ("custom field names and status labels not checked: no INTAKE_CLOSE_API_KEY")
    )
    print(f"{path}: OK, {len(sources.names())} sources ({', '.join(sources.names())}); {checked}")
    return 0


CONTENT_TYPE_SHORTHANDS = {
    "json": "application/json",
    "form": "application/x-www-form-urlencoded",
    "multipart": "multipart/form-data",
}


def _preview_envelope(args: argparse.Namespace, source: str) -> Envelope:
    raw = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    content_type = CONTENT_TYPE_SHORTHANDS.get(args.content_type, args.content_type)
    media_type, params = media_type_of(content_type)
    if media_type == "multipart/form-data" and "boundary" not in params:
        first = raw.lstrip().split(b"\r\n", 1)[0].split(b"\n", 1)[0]
        content_type = f"{content_type}; boundary={first.decode('latin-1')[2:]}"
    try:
        parsed = parse_body(content_type, raw)
    except BodyError as exc:
        raise ConfigError([ConfigIssue(str(args.file), exc.detail)]) from None
    headers = {}
    for header in args.header:
        name, _, value = header.partition(":")
        headers[name.strip().lower()] = value.strip()
    now = time.time()
    return Envelope(
        id=new_submission_id(now),
        source=source,
        received_at=now,
        content_type=parsed.media_type,
        body=parsed.body,
        headers=headers,
        query=dict(parse_qsl(args.query or "", keep_blank_values=True)),
        client_ip=args.client_ip,
    )


def cmd_map(settings: Settings, args: argparse.Namespace) -> int:
    presets = bundled_presets()
    spec: MappingSpec
    if args.source:
        found = load_sources(settings.sources_file).get(args.source)
        if found is None:
            raise ConfigError(
                [
                    ConfigIssue(
                        f"sources.{args.source}", "no such source", str(settings.sources_file)
                    )
                ]
            )
        spec, name = found, args.source
    else:
        spec, name = MappingSpec(preset=args.preset), args.preset
    schema = asyncio.run(_close_schema(settings))
    mapper = Mapper(spec, source=name, presets=presets, schema=schema)
    try:
        mapped = mapper.map(_preview_envelope(args, name))
    except MappingRejected as exc:
        print(
            json.dumps(
                {"rejected": exc.reason, **({"detail": exc.detail} if exc.detail else {})},
                indent=2,
                ensure_ascii=False,
            )
        )
        return EXIT_REJECTED
    print(json.dumps(preview(mapped), indent=2, ensure_ascii=False))
    return 0


async def _replay(settings: Settings, args: argparse.Namespace) -> int:
    if not settings.redis_url:
        raise ConfigError([ConfigIssue("INTAKE_REDIS_URL", "required for `replay`")])
    since = _parse_since(args.since) if args.since else None
    redis = redis_from_url(settings.redis_url)
    queue = Queue.from_settings(redis, settings)
    try:
        if args.id:
            results = await queue.records.replay_all(list(args.id))
            more = False
        else:
            selection = Selection(
                states=(as_state(args.state),),
                source=args.source,
                since=since,
                limit=REPLAY_BATCH,
            )
            results, more = await queue.replay_selected(selection)  # oldest first
        failures = 0
        for sub_id, outcome in results:
            print(f"{sub_id}: {outcome}")
            failures += outcome != "replayed"
        print(f"{len(results) - failures} replayed, {failures} not", file=sys.stderr)
        if more:
            print(f"more than {REPLAY_BATCH} matched: run it again for the rest", file=sys.stderr)
        return 1 if failures else 0
    finally:
        await redis.aclose()


def _parse_since(text: str) -> float:
    """``--since``: ISO-8601 (UTC when no offset is given) or unix seconds."""
    try:
        return parse_time(text)
    except BadTime as exc:
        raise ConfigError([ConfigIssue("--since", f"{exc}: {text!r}")]) from None


def cmd_replay(settings: Settings, args: argparse.Namespace) -> int:
    return asyncio.run(_replay(settings, args))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lead-intake",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"lead-intake {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the receiver (HTTP) only")
    sub.add_parser("worker", help="run the worker pool only")
    dev = sub.add_parser("dev", help="receiver + worker in one process with local stand-ins")
    dev.add_argument(
        "--emulator-port",
        type=int,
        default=8081,
        help="port of the Close emulator when no API key is set (0: any free port)",
    )
    emu = sub.add_parser("emulator", help="run the built-in Close emulator")

    add_emulator_arguments(emu)
    check = sub.add_parser("check-config", help="validate the sources file and exit")
    check.add_argument("file", nargs="?", type=Path, help="defaults to INTAKE_SOURCES_FILE")
    mapping = sub.add_parser(
        "map", help="show the Close body, note and identity a payload maps to (sends nothing)"
    )
    which = mapping.add_mutually_exclusive_group(required=True)
    which.add_argument("--source", help="a source of the sources file")
    which.add_argument("--preset", help="a provider preset, without a source")
    mapping.add_argument(
        "--content-type",
        default="application/json",
        help="media type of FILE, or json | form | multipart (default json)",
    )
    mapping.add_argument("--query", help="query string of the request, e.g. 'utm_source=ads'")
    mapping.add_argument(
        "--header", action="append", default=[], help="a request header 'Name: value' (repeatable)"
    )
    mapping.add_argument("--client-ip", help="the client IP the request came from")
    mapping.add_argument("file", help="the payload file, or - for standard input")
    replay = sub.add_parser(
        "replay", help="queue finished submissions again (the lookup runs again: no second lead)"
    )
    chosen = replay.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--id", action="append", help="a submission id (repeatable)")
    chosen.add_argument("--state", choices=["dead"], help="every dead-lettered submission")
    replay.add_argument("--source", help="with --state: only this source")
    replay.add_argument("--since", help="with --state: received since (ISO-8601 or unix)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "emulator":
            configure_logging("dev")
            return cmd_emulator(args)
        settings = _settings()
        configure_logging(
            settings.env if args.command != "dev" else "dev",
            settings.log_level,
            log_pii=settings.log_pii,
        )
        if args.command == "check-config":
            return cmd_check_config(settings, args)
        if args.command == "map":
            return cmd_map(settings, args)
        if args.command == "replay":
            return cmd_replay(settings, args)
        sources = _load(settings)
        handlers = {"serve": cmd_serve, "worker": cmd_worker, "dev": cmd_dev}
        tracing.setup({"serve": "receiver"}.get(args.command, args.command))
        try:
            return handlers[args.command](settings, sources, args)
        finally:
            tracing.shutdown()
    except ConfigError as exc:
        return _fail_config(exc)
    except KeyboardInterrupt:
        logging.getLogger(__name__).info("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
