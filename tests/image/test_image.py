"""The container image, built and run for real (``make image-check``, also run by ``.ci/run``).

The image is built with podman (the base: the Dockerfile's, or a stand-in bootstrapped from
Debian packages where it cannot be pulled), then Redis, the Close emulator, the receiver and the
worker run as containers with a read-only root, a non-root user, no capabilities and no init
(each process is PID 1 and must handle SIGTERM itself):

- a form post becomes a lead in the emulator;
- SIGTERM to the worker under load: it exits within its grace, and a second worker finishes
  everything, one lead per submission;
- SIGTERM to the receiver under load: every post it answered 202 becomes a lead, including the
  ones answered after the signal (its drain window);
- SIGTERM ends the emulator and Redis at once;
- docker-compose.yml's services, started as it declares them, turn a form post into a lead and
  stop within their grace periods.

It prints the figures (bootstrap, build and stop times, the image size). Not collected by
``make test`` (tests/conftest.py); skipped, saying why, only when podman is not installed.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from close_emulator import DEFAULT_API_KEY
from service import __version__
from service.dev.redis_server import free_port
from tests.image.compose import ComposeStack, Service, compose_file
from tests.image.podman import (
    ROOT,
    Podman,
    build,
    dockerfile_arg,
    python_base,
    redis_image,
    say,
    timed,
)

pytestmark = pytest.mark.timeout(1800)

UID = "10001:10001"
LOCKED_DOWN = (
    "--network=host",
    "--read-only",
    f"--user={UID}",
    "--cap-drop=ALL",
    "--security-opt=no-new-privileges",
)
"""What every Lead Intake container gets here: no /tmp either, so any write fails."""
GRACE = 30  # the stop timeout: Kubernetes' terminationGracePeriodSeconds
ADMIN_TOKEN = "image-check-admin-token"
CHECK_SOURCES = "/etc/lead-intake-check/sources.yaml"


@dataclass
class Built:
    podman: Podman
    image: str
    work: Path
    run_id: str
    figures: dict[str, float] = field(default_factory=dict)


def image_source() -> str:
    return os.environ.get("IMAGE_SOURCE", "")


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    if shutil.which("podman") is None:
        pytest.skip(
            "podman is not installed: the image was NOT built or run "
            "(`make image-check` installs podman, runc and mmdebstrap with apt)"
        )
    started = time.monotonic()
    work = tmp_path_factory.mktemp("image-check")
    podman = Podman(work / "podman")
    run_id = uuid.uuid4().hex[:8]
    figures: dict[str, float] = {}
    wanted = dockerfile_arg("BASE_IMAGE")
    with timed("base image", figures):
        base = python_base(podman, wanted)
    image = f"localhost/lead-intake:check-{run_id}"
    dangling_before = set(podman.out("images", "--quiet", "--filter=dangling=true").split())
    revision = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()
    with timed("image build", figures):
        build(
            podman,
            image,
            base,
            {"VERSION": __version__, "SOURCE": image_source(), "REVISION": revision},
            work,
        )
    size = podman.image_size(image)
    figures["image size MB"] = round(size / 1e6, 1)
    say(f"image {image}: {size / 1e6:.1f} MB (on base {base})")
    built = Built(podman, image, work, run_id, figures)
    try:
        yield built
    finally:
        podman.run("rmi", "--force", image, check=False)
        # The build stage's image is left untagged: remove those this build made.
        left = set(podman.out("images", "--quiet", "--filter=dangling=true").split())
        for leftover in sorted(left - dangling_before):
            podman.run("rmi", "--force", leftover, check=False)
        figures["whole check s"] = round(time.monotonic() - started, 1)
        say("figures: " + json.dumps(figures))


def test_image_labels_version_and_user(built: Built) -> None:
    podman = built.podman
    info: Any = podman.inspect("image", built.image)
    config = info["Config"]
    labels = config["Labels"]
    assert labels["org.opencontainers.image.version"] == __version__
    assert labels["org.opencontainers.image.source"] == image_source()
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert config["User"] == UID
    assert config["Entrypoint"] == ["lead-intake"]
    assert "/healthz" in " ".join(info["Healthcheck"]["Test"])
    version = podman.out("run", "--rm", *LOCKED_DOWN, built.image, "--version")
    assert version == f"lead-intake {__version__}"
    # The shipped sources file is in the image and valid.
    checked = podman.out("run", "--rm", *LOCKED_DOWN, built.image, "check-config")
    assert "config/sources.yaml: OK" in checked


# --- the four roles as containers, on the host's network ---------------------------------------


@dataclass
class Stack:
    built: Built
    redis_port: int
    emulator_port: int
    receiver_port: int
    worker_port: int
    containers: list[str] = field(default_factory=list)

    @property
    def podman(self) -> Podman:
        return self.built.podman

    def name(self, role: str) -> str:
        return f"lead-intake-check-{self.built.run_id}-{role}"

    def start(self, role: str, *args: str) -> str:
        name = self.name(role)
        self.podman.run("run", "--detach", f"--name={name}", *args)
        self.containers.append(name)
        return name

    def intake_env(self) -> list[str]:
        env = {
            "INTAKE_ENV": "production",
            "INTAKE_REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "INTAKE_CLOSE_BASE_URL": f"http://127.0.0.1:{self.emulator_port}/api/v1",
            "INTAKE_CLOSE_API_KEY": DEFAULT_API_KEY,
            "INTAKE_ADMIN_TOKEN": ADMIN_TOKEN,
            "INTAKE_HOST": "127.0.0.1",
            "INTAKE_PORT": str(self.receiver_port),
            "INTAKE_WORKER_HTTP_PORT": str(self.worker_port),
            "INTAKE_SHUTDOWN_GRACE_SECONDS": "20",
            "INTAKE_SOURCES_FILE": CHECK_SOURCES,
            "INTAKE_CLOSE_RATE_LIMIT": "1000",
        }
        sources = ROOT / "tests" / "image" / "sources.yaml"
        return [f"--env={k}={v}" for k, v in env.items()] + [
            f"--volume={sources}:{CHECK_SOURCES}:ro"
        ]

    def start_worker(self, role: str = "worker") -> str:
        return self.start(role, *LOCKED_DOWN, *self.intake_env(), self.built.image, "worker")

    def start_receiver(self, role: str = "receiver") -> str:
        return self.start(role, *LOCKED_DOWN, *self.intake_env(), self.built.image, "serve")

    def url(self, role: str, path: str) -> str:
        port = {"receiver": self.receiver_port, "emulator": self.emulator_port}[role]
        return f"http://127.0.0.1:{port}{path}"


async def wait_for(url: str, within: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + within
    last = ""
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            try:
                async with http.get(url) as response:
                    if response.status == 200:
                        return
                    last = f"{response.status} {await response.text()}"
            except aiohttp.ClientError as exc:
                last = type(exc).__name__
            await asyncio.sleep(0.25)
    raise AssertionError(f"{what or url} not ready within {within:.0f} s: {last}")


async def leads_by_email(stack: Stack) -> dict[str, int]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(stack.url("emulator", "/_emulator/leads")) as response,
    ):
        leads = (await response.json())["data"]
    counts: dict[str, int] = {}
    for lead in leads:
        for contact in lead.get("contacts", []):
            for email in contact.get("emails", []):
                counts[email["email"]] = counts.get(email["email"], 0) + 1
    return counts


async def wait_for_leads(stack: Stack, emails: set[str], within: float = 120) -> dict[str, int]:
    deadline = time.monotonic() + within
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        counts = await leads_by_email(stack)
        if emails <= set(counts):
            return counts
        await asyncio.sleep(0.5)
    missing = sorted(emails - set(counts))
    raise AssertionError(f"{len(missing)} submissions never became leads: {missing[:5]}...")


@pytest.fixture(scope="module")
def stack(built: Built) -> Iterator[Stack]:
    redis = redis_image(built.podman, compose_file()["services"]["redis"]["image"])
    stack = Stack(built, free_port(), free_port(), free_port(), free_port())
    volume = f"lead-intake-check-{built.run_id}-redis"
    built.podman.run("volume", "create", volume)
    try:
        stack.start(
            "redis",
            "--network=host",
            "--read-only",
            "--user=redis",
            "--cap-drop=ALL",
            "--security-opt=no-new-privileges",
            f"--volume={volume}:/data:U",
            redis,
            "redis-server",
            "--port",
            str(stack.redis_port),
            "--bind",
            "127.0.0.1",
            "--dir",
            "/data",
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--maxmemory-policy",
            "noeviction",
        )
        # The emulator answers slowly, so the worker holds work in flight when it is stopped.
        stack.start(
            "emulator",
            *LOCKED_DOWN,
            built.image,
            "emulator",
            "--host",
            "127.0.0.1",
            "--port",
            str(stack.emulator_port),
            "--latency-ms",
            "150",
        )
        stack.start_worker()
        stack.start_receiver()
        yield stack
    finally:
        for name in reversed(stack.containers):
            built.podman.run("rm", "--force", "--time=0", name, check=False)
        built.podman.run("volume", "rm", "--force", volume, check=False)


@pytest.fixture(scope="module")
def ready(stack: Stack) -> Stack:
    async def wait() -> None:
        await wait_for(stack.url("emulator", "/_emulator/leads"), what="the emulator")
        await wait_for(stack.url("receiver", "/readyz"), what="the receiver")
        await wait_for(f"http://127.0.0.1:{stack.worker_port}/healthz", what="the worker")

    try:
        asyncio.run(wait())
    except AssertionError:
        for name in stack.containers:
            say(f"--- logs of {name}:\n{stack.podman.logs(name)}")
        raise
    return stack


async def test_containers_are_locked_down(ready: Stack) -> None:
    podman = ready.podman
    for role in ("emulator", "worker", "receiver"):
        info: Any = podman.inspect("container", ready.name(role))
        assert info["HostConfig"]["ReadonlyRootfs"] is True
        assert info["Config"]["User"] == UID
        assert not info["EffectiveCaps"], f"{role} has capabilities {info['EffectiveCaps']}"
        uid = podman.out("exec", ready.name(role), "python", "-c", "import os; print(os.getuid())")
        assert uid == "10001"
        # Nothing in the image is writable: a write anywhere fails.
        denied = podman.run(
            "exec", ready.name(role), "python", "-c", "open('/app/x', 'w')", check=False
        )
        assert denied.returncode != 0 and "Read-only file system" in str(denied.stderr)
    # The image's HEALTHCHECK (port 8080) is run by the compose check, where the receiver
    # listens there; here every port is a free one of the host's.


async def test_a_form_post_becomes_a_lead(ready: Stack) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            ready.url("receiver", "/hooks/website"),
            data={"name": "Ann Lee", "email": "ann@example.com", "company": "Acme"},
        ) as response,
    ):
        assert response.status == 202, await response.text()
        sub_id = (await response.json())["id"]
    counts = await wait_for_leads(ready, {"ann@example.com"})
    assert counts["ann@example.com"] == 1
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            ready.url("receiver", f"/v1/submissions/{sub_id}"),
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        ) as response,
    ):
        record = await response.json()
    assert record["state"] == "created", record


async def post_load(ready: Stack, emails: list[str]) -> list[str]:
    async with aiohttp.ClientSession() as http:
        for email in emails:
            async with http.post(
                ready.url("receiver", "/hooks/load"), json={"email": email, "name": "Load Test"}
            ) as response:
                assert response.status == 202, await response.text()
    return emails


async def test_worker_sigterm_under_load_loses_nothing(ready: Stack) -> None:
    emails = await post_load(ready, [f"drain{n}@example.com" for n in range(60)])
    for _ in range(400):  # some done, most still waiting or in flight
        if len(set(await leads_by_email(ready)) & set(emails)) >= 5:
            break
        await asyncio.sleep(0.05)
    took, code = await asyncio.to_thread(ready.podman.stop, ready.name("worker"), GRACE)
    ready.built.figures["worker stop s"] = round(took, 1)
    say(f"worker: SIGTERM under load, exited {code} after {took:.1f} s")
    logs = ready.podman.logs(ready.name("worker"))
    assert code == 0, logs
    assert took < 25, "the worker did not finish within its grace period"
    done = set(await leads_by_email(ready)) & set(emails)
    assert len(done) < len(emails), "everything was done before the stop: no drain was tested"
    ready.start_worker("worker-2")
    counts = await wait_for_leads(ready, set(emails))
    doubled = {e: n for e, n in counts.items() if e in emails and n != 1}
    assert not doubled, f"leads made twice: {doubled}"


async def test_receiver_sigterm_keeps_every_accepted_post(ready: Stack) -> None:
    accepted: list[str] = []
    after_signal: list[str] = []
    signalled = asyncio.Event()
    refused = 0

    async def sender(n: int) -> None:
        nonlocal refused
        async with aiohttp.ClientSession() as http:
            for i in range(10_000):
                email = f"door{n}-{i}@example.com"
                try:
                    async with http.post(
                        ready.url("receiver", "/hooks/load"), json={"email": email}
                    ) as response:
                        if response.status == 202:
                            (after_signal if signalled.is_set() else accepted).append(email)
                        else:
                            refused += 1  # 503 while draining: the sender sends again
                except aiohttp.ClientError:
                    return  # the listener closed
                await asyncio.sleep(0.01)

    senders = [asyncio.create_task(sender(n)) for n in range(4)]
    await asyncio.sleep(1.0)
    signalled.set()
    took, code = await asyncio.to_thread(ready.podman.stop, ready.name("receiver"), GRACE)
    await asyncio.wait_for(asyncio.gather(*senders), 30)
    ready.built.figures["receiver stop s"] = round(took, 1)
    say(
        f"receiver: SIGTERM under load, exited {code} after {took:.1f} s; "
        f"{len(accepted)} posts accepted before the signal, {len(after_signal)} while draining, "
        f"{refused} refused"
    )
    assert code == 0, ready.podman.logs(ready.name("receiver"))
    assert took < 25
    assert accepted and after_signal, "no post was answered while the receiver drained"
    counts = await wait_for_leads(ready, set(accepted + after_signal), within=180)
    doubled = {e: n for e, n in counts.items() if e.startswith("door") and n != 1}
    assert not doubled


async def test_sigterm_ends_every_other_container_at_once(ready: Stack) -> None:
    for role in ("worker-2", "emulator", "redis"):
        took, code = await asyncio.to_thread(ready.podman.stop, ready.name(role), GRACE)
        ready.built.figures[f"{role} stop s"] = round(took, 1)
        say(f"{role}: SIGTERM, exited {code} after {took:.1f} s")
        assert code == 0, f"{role} exited {code}:\n{ready.podman.logs(ready.name(role))}"
        assert took < 10, f"{role} took {took:.1f} s to stop"


# --- docker-compose.yml ------------------------------------------------------------------------


def test_compose_services_as_declared(built: Built) -> None:
    services = compose_file()["services"]
    images = {
        services["receiver"]["image"]: built.image,  # what `build: .` builds
        services["redis"]["image"]: redis_image(built.podman, services["redis"]["image"]),
    }
    compose = ComposeStack(built.podman, images, built.work, built.run_id)
    try:
        with timed("compose up (healthy)", built.figures):
            compose.up()
        answer = compose.in_pod(
            built.image,
            "import urllib.request, json\n"
            "r = urllib.request.urlopen(urllib.request.Request("
            "'http://receiver:8080/hooks/website', data=b'name=Bo+Ray&email=bo%40example.com'))\n"
            "print(r.status, r.read().decode())",
        )
        assert answer.startswith("202 "), answer
        poll = (
            "import json, time, urllib.request\n"
            "for _ in range(240):\n"
            "    leads = json.load(urllib.request.urlopen("
            "'http://emulator:8765/_emulator/leads?email=bo@example.com'))['data']\n"
            "    if leads: break\n"
            "    time.sleep(0.5)\n"
            "print(len(leads))"
        )
        assert compose.in_pod(built.image, poll, timeout=180) == "1"

        def stopped(service: Service, took: float, code: int) -> None:
            built.figures[f"compose {service.name} stop s"] = round(took, 1)
            say(f"compose: {service.name} exited {code} after {took:.1f} s")
            assert code == 0, compose.podman.logs(service.container)
            assert took < min(service.grace, 25), f"{service.name} was killed"

        compose.down(stopped)
    finally:
        compose.remove()
