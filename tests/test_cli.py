"""The command line: map, check-config, and refusing to start on a bad sources file."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import os
import signal
import sys
import time
from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestServer

from provider_emulator.state import bundled_fixtures
from service import __version__
from service.dev.redis_server import RedisServer, free_port
from service.envelope import Envelope, new_submission_id
from service.queue import Queue, Selection, Transition
from tests.conftest import API_KEY, ROOT

PAYLOADS = ROOT / "tests" / "mapping" / "payloads"


async def run_cli(
    *args: str, env: dict[str, str] | None = None, stdin: bytes = b""
) -> tuple[int, str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("INTAKE_")}
    clean.update(env or {})
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service.cli",
        *args,
        cwd=ROOT,
        env=clean,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


BAD_SOURCES = """
sources:
  website:
    kind: form
    preset: no-such-preset
    extract:
      email: "body.email["
      favourite_colour: body.colour
  partner:
    kind: carrier-pigeon
  Bad Name:
    kind: webhook
"""


async def test_check_config_accepts_the_shipped_file() -> None:
    code, out, _ = await run_cli("check-config")
    assert code == 0
    assert "config/sources.yaml: OK" in out and "partner, website" in out


async def test_check_config_lists_every_problem_with_file_and_key_path(tmp_path: Path) -> None:
    bad = tmp_path / "sources.yaml"
    bad.write_text(BAD_SOURCES)
    code, _, err = await run_cli("check-config", str(bad))
    assert code == 2
    for path in (
        "sources.Bad Name",
        "sources.partner.kind",
        "sources.website.preset",
        "sources.website.extract.email",
        "sources.website.extract.favourite_colour",
    ):
        assert f"{bad}: {path}:" in err, err


async def test_unreadable_yaml_names_line_and_column(tmp_path: Path) -> None:
    bad = tmp_path / "sources.yaml"
    bad.write_text("sources:\n  website: [unclosed\n")
    code, _, err = await run_cli("check-config", str(bad))
    assert code == 2
    assert "line 3" in err and "not valid YAML" in err


async def test_processes_refuse_to_start_on_a_bad_sources_file(tmp_path: Path) -> None:
    bad = tmp_path / "sources.yaml"
    bad.write_text(BAD_SOURCES)
    for command in ("serve", "worker", "dev"):
        code, _, err = await run_cli(
            command,
            env={"INTAKE_SOURCES_FILE": str(bad), "INTAKE_REDIS_URL": "redis://127.0.0.1:1/0"},
        )
        assert code == 2, (command, err)
        assert "sources.partner.kind" in err


async def test_map_preset_prints_the_close_body() -> None:
    code, out, _ = await run_cli("map", "--preset", "typeform", str(PAYLOADS / "typeform.json"))
    assert code == 0
    result = json.loads(out)
    assert set(result) >= {"lead", "note", "identity", "warnings"}
    assert result["lead"]["contacts"][0]["emails"][0]["email"] == result["identity"]["email"]
    assert result["note"].startswith("Typeform")


async def test_map_source_with_form_body_from_stdin() -> None:
    code, out, _ = await run_cli(
        "map",
        "--source",
        "website",
        "--content-type",
        "form",
        "--query",
        "utm_source=ads",
        "-",
        stdin=b"name=Ann+Lee&email=Ann%40Example.com&phone=415-555-2671",
    )
    assert code == 0
    result = json.loads(out)
    assert result["identity"] == {"email": "ann@example.com", "phone": "+14155552671"}
    assert result["lead"]["name"] == "Ann Lee"
    assert "utm_source: ads" in result["note"]


async def test_map_multipart_without_boundary_parameter(tmp_path: Path) -> None:
    body = tmp_path / "post.txt"
    body.write_bytes(
        b"--XyZ\r\n"
        b'Content-Disposition: form-data; name="email"\r\n\r\n'
        b"bo@example.com\r\n--XyZ--\r\n"
    )
    code, out, _ = await run_cli(
        "map", "--source", "website", "--content-type", "multipart", str(body)
    )
    assert code == 0, out
    assert json.loads(out)["identity"]["email"] == "bo@example.com"


async def test_map_shows_the_fetch_a_thin_payload_needs_then_maps_the_answer(
    tmp_path: Path,
) -> None:
    batch = str(PAYLOADS / "meta-lead-ads-batch.json")
    code, out, _ = await run_cli("map", "--preset", "meta-lead-ads", batch, "--item", "1")
    assert code == 0, out
    shown = json.loads(out)
    assert shown["items"] == 2
    assert shown["fetch"]["id"] == "125"
    assert shown["fetch"]["request"].startswith("GET https://graph.facebook.com/v25.0/125?fields=")
    answer = tmp_path / "lead.json"
    answer.write_text(json.dumps(bundled_fixtures()["meta"]["125"]))
    code, out, _ = await run_cli(
        "map", "--preset", "meta-lead-ads", batch, "--item", "1", "--fetched", str(answer)
    )
    assert code == 0, out
    mapped = json.loads(out)
    assert mapped["lead"]["name"] == "Casey Lee"
    assert mapped["identity"]["phone"] == "+442079460958"


async def test_map_rejected_payload_exits_3_with_reason(tmp_path: Path) -> None:
    body = tmp_path / "empty.json"
    body.write_text(json.dumps({"contact": {"note": "no way to reach me"}}))
    code, out, _ = await run_cli("map", "--source", "partner", str(body))
    assert code == 3
    assert "missing required field" in json.loads(out)["rejected"]
    assert json.loads(out)["detail"]["code"] == "missing-required"


async def test_map_resolves_custom_field_names_through_close(
    tmp_path: Path, emulator: TestServer
) -> None:
    sources = tmp_path / "sources.yaml"
    sources.write_text(
        "sources:\n  site:\n    kind: form\n    preset: generic-form\n"
        "    lead:\n      status: \"'Qualified'\"\n"
        "      custom:\n        Lead Source: \"'Website'\"\n"
    )
    body = tmp_path / "b.json"
    body.write_text(json.dumps({"email": "cy@example.com"}))
    env = {
        "INTAKE_SOURCES_FILE": str(sources),
        "INTAKE_CLOSE_API_KEY": API_KEY,
        "INTAKE_CLOSE_BASE_URL": str(emulator.make_url("/api/v1")),
    }
    code, out, err = await run_cli("map", "--source", "site", str(body), env=env)
    assert code == 0, err
    lead = json.loads(out)["lead"]
    assert lead["status_id"].startswith("stat_")
    assert [k for k in lead if k.startswith("custom.")] and all(
        k.startswith("custom.cf_") for k in lead if k.startswith("custom.")
    )
    code, out, err = await run_cli("check-config", env=env)
    assert code == 0 and "checked against Close" in out
    sources.write_text(sources.read_text().replace("Lead Source", "No Such Field"))
    code, _, err = await run_cli("check-config", env=env)
    assert code == 2 and "sources.site.lead.custom.No Such Field" in err


async def test_replay_command_requeues_dead_letters(
    queue: Queue, redis_server: RedisServer, prefix: str
) -> None:
    now = time.time()
    dead_ids = []
    for source in ("website", "partner", "partner"):
        env = Envelope(
            id=new_submission_id(),
            source=source,
            received_at=now,
            content_type="application/json",
            body={"email": "x@example.com"},
        )
        await queue.intake.enqueue(env)
        [entry] = await queue.stream.read("c", 1, 100)
        await queue.steps.apply(Transition(env.id, "dead", ack=entry, dead=True, source=source))
        dead_ids.append(env.id)
    env_vars = {"INTAKE_REDIS_URL": redis_server.url, "INTAKE_KEY_PREFIX": prefix}
    code, out, _ = await run_cli("replay", "--state", "dead", "--source", "partner", env=env_vars)
    assert code == 0
    # Records received at the same time are listed in id order, which within one millisecond
    # is the ids' random part: compare the lines, not their order.
    assert sorted(out.splitlines()) == sorted(f"{i}: replayed" for i in dead_ids[1:])
    assert [r.id for r in await queue.index.select(Selection(states=("dead",)))] == [dead_ids[0]]
    record = await queue.records.get(dead_ids[1])
    assert record is not None and record.state == "queued" and record.attempts == 0
    code, out, _ = await run_cli("replay", "--id", dead_ids[0], "--id", "sub_gone", env=env_vars)
    assert code == 1
    assert f"{dead_ids[0]}: replayed" in out and "sub_gone: unknown" in out


async def test_version_is_the_package_version_everywhere() -> None:
    code, out, _ = await run_cli("--version")
    assert code == 0
    assert out.strip() == f"lead-intake {__version__}"
    # The distribution's version is read from the same place (pyproject: hatch's version path).
    assert importlib.metadata.version("lead-intake") == __version__


async def test_emulator_stops_on_sigterm() -> None:
    """As a container's PID 1 a process without a SIGTERM handler ignores the signal: the
    emulator handles it and exits 0 at once, instead of dying of it."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service.cli",
        "emulator",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(200):
                try:
                    async with session.get(f"http://127.0.0.1:{port}/_emulator/leads") as resp:
                        assert resp.status == 200
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)
            else:
                raise AssertionError("the emulator did not start")
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 10)
        assert code == 0, f"exit {code}: the signal was not handled"
        assert time.monotonic() - started < 5
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


SCHEMA_AND_MAPPING_ERRORS = """
sources:
  website:
    kind: from
    preset: generic-form
    extract:
      email: "body.email["
    lead:
      status: "'Potentia'"
      custom:
        No Such Field: "'x'"
      contact:
        phone_type: cell
  tf:
    kind: webhook
    preset: typefrom
    auth:
      secrets: [env:HOME]
"""


async def test_check_config_reports_a_sources_mapping_after_its_schema_errors(
    tmp_path: Path,
) -> None:
    bad = tmp_path / "sources.yaml"
    bad.write_text(SCHEMA_AND_MAPPING_ERRORS)
    code, _, err = await run_cli("check-config", str(bad))
    assert code == 2
    reported = [line.split(": ", 2)[1] for line in err.splitlines() if line.startswith("  - ")]
    assert sorted(reported) == sorted(
        [
            # the schema errors of the source...
            "sources.website.kind",
            "sources.website.lead.contact.phone_type",
            # ...and, in the same run, what its mapping gets wrong (names checked too)
            "sources.website.extract.email",
            "sources.website.lead.status",
            "sources.website.lead.custom.No Such Field",
            # a misspelled preset next to an auth block is named, there and at `preset`
            "sources.tf.auth",
            "sources.tf.preset",
            "sources.tf.required[0]",
        ]
    ), err
    assert reported.index("sources.website.kind") < reported.index("sources.tf.auth")
    assert "the preset 'typefrom' is unknown" in err
    assert "unknown lead status 'Potentia'" in err


async def test_presets_lists_them_and_shows_one() -> None:
    code, out, _ = await run_cli("presets")
    assert code == 0
    lines = out.splitlines()
    assert any(line.startswith("typeform ") and "[auth: typeform]" in line for line in lines)
    assert any(line.startswith("generic-form ") for line in lines)
    code, out, _ = await run_cli("presets", "typeform")
    assert code == 0
    assert "auth:          typeform (header Typeform-Signature" in out
    assert "secrets: [env:TYPEFORM_SECRET]" in out  # what a source must add
    assert "  email: " in out and "kind:          webhook" in out
    code, out, _ = await run_cli("presets", "generic-form")
    assert "kind:          form" in out and "auth:          none" in out
    code, _, err = await run_cli("presets", "typefrom")
    assert code == 2 and "unknown preset 'typefrom'" in err


async def test_map_tells_a_bad_payload_from_a_rejected_one_and_a_bad_configuration(
    tmp_path: Path,
) -> None:
    not_json = tmp_path / "p.json"
    not_json.write_text("name=Ann")
    code, out, err = await run_cli("map", "--preset", "generic-json", str(not_json))
    assert (code, out) == (4, "")
    assert err.startswith("payload error: ") and "configuration" not in err
    code, _, err = await run_cli("map", "--preset", "generic-json", str(tmp_path / "none.json"))
    assert code == 4 and "cannot read" in err
    code, out, err = await run_cli("map", "--preset", "generic-json", "-", stdin=b"{}")
    assert code == 3 and "rejected" in json.loads(out) and "would not become a lead" in err
    code, _, err = await run_cli("map", "--source", "no-such", "-", stdin=b"{}")
    assert code == 2 and "configuration error" in err and "no such source" in err


async def test_emulator_refuses_a_bad_organisation_file(tmp_path: Path) -> None:
    org = tmp_path / "org.yaml"
    org.write_text("lead_statuses: []\nsequences: []\n")
    code, _, err = await run_cli("emulator", "--org", str(org), "--port", "0")
    assert code == 2
    assert f"{org}: lead_statuses:" in err and f"{org}: sequences: Extra inputs" in err
