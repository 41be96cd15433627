"""``lead-intake``: one command, several roles. The CLI only wires settings to the parts.

lead-intake dev            receiver + worker in one process, local stand-ins (make run)
lead-intake serve          the receiver (HTTP) only
lead-intake worker         the worker pool only
lead-intake emulator       the built-in Close emulator
lead-intake check-config   validate the sources file without starting
lead-intake map            show what a payload maps to, without sending anything
lead-intake presets        the provider presets; `presets NAME` shows one
lead-intake replay         queue finished submissions again

Exit codes: 0 done, 1 some replays failed, 2 bad configuration, 3 payload rejected by the
mapping (map), 4 payload unreadable (map), 5 a port in use.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from pydantic import ValidationError

from close_emulator import (
    EmulatorOptions,
    OrgFileError,
    add_emulator_arguments,
    options_from_args,
    run_emulator,
)
from service import __version__, tracing
from service.config.check import check_sources
from service.config.presets import bundled_presets, preset_details, preset_summary
from service.config.settings import Settings, load_settings
from service.config.sources import Sources, read_sources_file
from service.dev.ports import Port, PortInUse, check_free
from service.dev.preview import BadPayload, preview_envelope
from service.dev.schema import close_schema
from service.dev.stack import run_dev
from service.errors import ConfigError, ConfigIssue, MappingRejected
from service.logs import configure_logging
from service.loops import event_loop_factory, freeze_startup_heap
from service.mapping import Mapper, MappingSpec, preview
from service.metrics import Metrics
from service.queue import Queue, Selection
from service.queue.connection import redis_from_url
from service.queue.records import as_state
from service.receiver.server import serve
from service.times import BadTime, parse_time
from service.worker.http import create_worker_app
from service.worker.preview import hydration_preview
from service.worker.runtime import open_worker

EXIT_CONFIG = 2
EXIT_REJECTED = 3
EXIT_BAD_PAYLOAD = 4
EXIT_PORT_IN_USE = 5
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


def _load(settings: Settings) -> Sources:
    """The sources file, every problem of every source listed when it is bad."""
    path = settings.sources_file
    sources, issues = check_sources(read_sources_file(path), file=str(path), schema=None)
    if issues:
        raise ConfigError(issues)
    sources.path = path
    return sources


def _run(settings: Settings, main: Coroutine[Any, Any, _T]) -> _T:
    """Run a long-lived process's main coroutine on the configured event loop."""
    with asyncio.Runner(loop_factory=event_loop_factory(settings.event_loop)) as runner:
        return runner.run(main)


def cmd_serve(settings: Settings, sources: Sources, _args: argparse.Namespace) -> int:
    if not settings.redis_url:
        raise ConfigError([ConfigIssue("INTAKE_REDIS_URL", "required for `serve`")])
    check_free([Port(settings.host, settings.port, "receiver", "INTAKE_PORT")])
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
    port = Port(settings.host, settings.worker_http_port, "worker HTTP", "INTAKE_WORKER_HTTP_PORT")
    check_free([port])
    _run(settings, _run_worker(settings, sources))
    return 0


def cmd_dev(settings: Settings, sources: Sources, args: argparse.Namespace) -> int:
    if args.emulator_port is not None:
        settings = settings.model_copy(update={"emulator_port": args.emulator_port})
    _run(settings, run_dev(settings, sources))
    return 0


def cmd_emulator(args: argparse.Namespace) -> int:
    try:
        options = options_from_args(args)
    except OrgFileError as exc:
        issues = [ConfigIssue(where, text, exc.file) for where, text in exc.problems]
        raise ConfigError(issues) from None
    if args.port:
        check_free([Port(args.host, args.port, "Close emulator", "--port")])
    if "app_url" not in options.model_fields_set:  # EMULATOR_APP_URL: behind another address
        host = "localhost" if args.host in ("0.0.0.0", "::") else args.host  # noqa: S104
        options = options.patched({"app_url": f"http://{host}:{args.port}"})
    print(
        f"Close emulator on http://{args.host}:{args.port}/ (API under /api/v1/)",
        file=sys.stderr,
        flush=True,
    )
    asyncio.run(_run_emulator(options, args.host, args.port))
    return 0


async def _run_emulator(options: EmulatorOptions, host: str, port: int) -> None:
    """The emulator until SIGTERM or SIGINT. As a container's PID 1 (no init) a SIGTERM would
    otherwise be ignored and the container killed only when its stop timeout runs out."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await run_emulator(options, host, port, stop=stop)


def cmd_check_config(settings: Settings, args: argparse.Namespace) -> int:
    path = args.file or settings.sources_file
    checked = asyncio.run(close_schema(settings))
    sources, issues = check_sources(read_sources_file(path), file=str(path), schema=checked.schema)
    if issues:
        raise ConfigError(issues)
    names = ", ".join(sources.names())
    print(
        f"{path}: OK, {len(sources.names())} sources ({names}); custom fields and statuses "
        f"checked against {checked.against}"
    )
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    presets = bundled_presets()
    if args.name is None:
        width = max(len(name) for name in presets.names())
        for preset in presets:
            print(f"{preset.name:<{width}}  {preset_summary(preset)}")
        print("\n`lead-intake presets NAME` shows one: its fields, auth scheme, what it needs.")
        return 0
    if args.name not in presets:
        known = ", ".join(presets.names())
        raise ConfigError([ConfigIssue("preset", f"unknown preset {args.name!r}; known: {known}")])
    print("\n".join(preset_details(presets.get(args.name))))
    return 0


def cmd_map(settings: Settings, args: argparse.Namespace) -> int:
    presets = bundled_presets()
    spec: MappingSpec
    if args.source:
        found = _load(settings).get(args.source)
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
    schema = asyncio.run(close_schema(settings)).schema
    mapper = Mapper(spec, source=name, presets=presets, schema=schema)
    envelope = preview_envelope(args, name)
    envelope, fetch = hydration_preview(settings, spec, mapper, envelope, args.item, args.fetched)
    if fetch is not None:  # a thin payload: what the worker would fetch before mapping
        print(json.dumps(fetch, indent=2, ensure_ascii=False))
        return 0
    try:
        mapped = mapper.map(envelope)
    except MappingRejected as exc:
        print(
            json.dumps(
                {"rejected": exc.reason, **({"detail": exc.detail} if exc.detail else {})},
                indent=2,
                ensure_ascii=False,
            )
        )
        print("rejected: the payload would not become a lead (see above)", file=sys.stderr)
        return EXIT_REJECTED
    print(json.dumps(preview(mapped), indent=2, ensure_ascii=False))
    return 0


async def _replay(settings: Settings, args: argparse.Namespace) -> int:
    if not settings.redis_url:
        raise ConfigError([ConfigIssue("INTAKE_REDIS_URL", "required for `replay`")])
    since = _parse_since(args.since) if args.since else None
    redis = redis_from_url(settings.redis_url, settings.redis_options)
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
        default=None,
        help="port of the Close emulator when no API key is set (0: any free port; "
        "default INTAKE_EMULATOR_PORT, 8081)",
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
    mapping.add_argument("--fetched", help="the provider's answer for a thin payload (JSON)")
    mapping.add_argument("--item", type=int, default=0, help="which item of a split delivery")
    mapping.add_argument("file", help="the payload file, or - for standard input")
    presets = sub.add_parser("presets", help="list the provider presets, or show one")
    presets.add_argument("name", nargs="?", help="a preset to show in full")
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
        if args.command == "presets":
            return cmd_presets(args)
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
    except BadPayload as exc:
        print(f"payload error: {exc}", file=sys.stderr)
        return EXIT_BAD_PAYLOAD
    except PortInUse as exc:
        print(f"lead-intake {args.command}: {exc}", file=sys.stderr)
        return EXIT_PORT_IN_USE
    except KeyboardInterrupt:
        logging.getLogger(__name__).info("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
