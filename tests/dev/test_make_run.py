"""`make run` as a new user meets it: on a fresh clone of the committed tree, following the
README.

With both ports taken it stops with one line naming each port and the setting that changes it
(no traceback) and exit code 5; with free ports it installs what running needs, starts, takes
the README's first worked example and the lead reaches the emulator with its custom fields. The
clone's first `make run` installs the service into its own virtualenv (about 15 s here).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from service.dev.redis_server import free_port
from tests.conftest import ROOT
from tests.dev.processes import clean_env, read_until, start, stop

pytestmark = pytest.mark.skipif(
    shutil.which("git") is None or shutil.which("make") is None, reason="needs git and make"
)

README_POST = {
    "name": "Jane Doe",
    "email": "jane@acme.example",
    "phone": "(415) 555-2671",
    "company": "Acme",
    "plan": "pro",
    "message": "Hi",
}
README_PAGE = "https://example.com/pricing?utm_campaign=spring"


def readme_first_example() -> str:
    """The first YAML block of the README (the website form with its custom fields)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```yaml\n(.*?)```", text, re.DOTALL)
    assert block is not None, "the README has no YAML example"
    return block.group(1)


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh clone of the committed tree (what a new user gets; no virtualenv yet)."""
    target = tmp_path_factory.mktemp("fresh") / "lead-intake"
    subprocess.run(
        ["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(target)],
        check=True,
        timeout=60,
    )
    assert not (target / ".venv").exists()
    return target


@pytest.fixture
def taken_ports() -> Iterator[tuple[int, int]]:
    """Two ports another program listens on."""
    sockets = []
    for _ in range(2):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        sockets.append(sock)
    yield sockets[0].getsockname()[1], sockets[1].getsockname()[1]
    for sock in sockets:
        sock.close()


@pytest.mark.timeout(240)
def test_make_run_with_both_ports_taken_says_so_in_one_line(
    clone: Path, taken_ports: tuple[int, int]
) -> None:
    receiver, emulator = taken_ports
    env = clean_env(
        INTAKE_PORT=str(receiver), INTAKE_EMULATOR_PORT=str(emulator), INTAKE_HOST="127.0.0.1"
    )
    done = subprocess.run(
        ["make", "--no-print-directory", "run"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=200,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if line.startswith("lead-intake dev:")]
    assert lines == [
        f"lead-intake dev: port {receiver} (receiver) is in use, set INTAKE_PORT to another; "
        f"port {emulator} (Close emulator) is in use, set INTAKE_EMULATOR_PORT to another "
        "(0: any free port)"
    ], output
    assert "Error 5" in output  # make's report of lead-intake's exit code


async def _lead_of(http: aiohttp.ClientSession, emulator: str, email: str) -> dict[str, object]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        async with http.get(f"{emulator}/_emulator/leads", params={"email": email}) as answer:
            leads = (await answer.json())["data"]
        if leads:
            assert len(leads) == 1
            return dict(leads[0])
        await asyncio.sleep(0.2)
    raise AssertionError(f"no lead for {email} in the emulator")


@pytest.mark.timeout(240)
async def test_make_run_takes_the_readme_example_into_the_emulator(clone: Path) -> None:
    sources = clone / "readme-example.yaml"
    sources.write_text(readme_first_example(), encoding="utf-8")
    receiver_port, emulator_port = free_port(), free_port()
    env = clean_env(
        INTAKE_SOURCES_FILE=str(sources),
        INTAKE_PORT=str(receiver_port),
        INTAKE_EMULATOR_PORT=str(emulator_port),
        INTAKE_HOST="127.0.0.1",
    )
    process = await start("make", "--no-print-directory", "run", cwd=clone, env=env)
    log: list[str] = []
    try:
        # The banner's last line: the admin token was made up for this run.
        await read_until(process, "Records:", log, within=180)
        banner = "".join(log)
        assert f"http://127.0.0.1:{receiver_port}/admin (token for this run: " in banner
        receiver, emulator = (
            f"http://127.0.0.1:{receiver_port}",
            f"http://127.0.0.1:{emulator_port}",
        )
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{receiver}/hooks/website", data=README_POST, headers={"Referer": README_PAGE}
            ) as answer:
                assert answer.status == 202, await answer.text()
            lead = await _lead_of(http, emulator, "jane@acme.example")
            # The ids the README shows: config/emulator-org.yaml gives the fields those ids.
            assert lead["status_label"] == "Potential"
            assert lead["custom.cf_LQWd4jbPD1Xkp9vQqPaZ"] == "Website"  # Lead Source
            assert lead["custom.cf_a4xW1ql2T7qMJ3LTeYvJ"] == "spring"  # UTM Campaign
            assert lead["custom.cf_Tp9kq3nWm7YcR2ZxVb8L"] == "Pro"  # Plan
            # The lead's link is the emulator's own page, and it shows the fields by name.
            assert lead["html_url"] == f"{emulator}/lead/{lead['id']}/"
            async with http.get(str(lead["html_url"])) as page:
                text = await page.text()
            assert page.status == 200
            assert "UTM Campaign" in text and "spring" in text and "Jane Doe" in text
    finally:
        await stop(process)
