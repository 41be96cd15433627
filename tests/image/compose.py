"""docker-compose.yml's services started exactly as it declares them, with podman.

podman-compose would need a bridge network with DNS, which this machine's podman lacks; so the
services run in one pod with a network of its own (only loopback), each service's name
resolving to it through an /etc/hosts mounted in every container. Everything else is taken
from the file: image, command, environment (``${NAME:-default}`` as Compose reads it with
NAME unset), user, init, read-only root, tmpfs, capabilities, security options, named volumes,
health checks, ``depends_on`` conditions (a service starts once those it depends on are
healthy) and the stop grace period. A key this module does not know fails the check, so the
file cannot grow something that is silently left out.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.image.podman import ROOT, Podman, say

KNOWN_KEYS = {
    "build",
    "image",
    "command",
    "environment",
    "user",
    "init",
    "read_only",
    "tmpfs",
    "cap_drop",
    "security_opt",
    "volumes",
    "ports",
    "healthcheck",
    "depends_on",
    "stop_grace_period",
    "restart",
}


def compose_file() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def resolve(value: object) -> str:
    """``${NAME:-default}`` with NAME unset → default (Compose's reading)."""
    return re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", str(value))


def seconds(value: object) -> int:
    found = re.fullmatch(r"(\d+)s", str(value))
    assert found, f"a duration this check cannot read: {value!r}"
    return int(found.group(1))


@dataclass
class Service:
    name: str
    spec: dict[str, Any]
    container: str

    @property
    def grace(self) -> int:
        return seconds(self.spec.get("stop_grace_period", "10s"))

    def health_test(self) -> list[str] | None:
        check = self.spec.get("healthcheck")
        if not check:
            return None
        test = list(check["test"])
        assert test[0] == "CMD", f"{self.name}: only CMD health checks are supported"
        return [str(t) for t in test[1:]]


def start_order(services: dict[str, Any]) -> list[str]:
    order: list[str] = []

    def visit(name: str, trail: tuple[str, ...] = ()) -> None:
        assert name not in trail, f"depends_on cycle: {trail}"
        if name in order:
            return
        for dependency in services[name].get("depends_on", {}):
            visit(dependency, (*trail, name))
        order.append(name)

    for name in services:
        visit(name)
    return order


class ComposeStack:
    """The compose file's services in one pod; ``images`` maps a declared image to the one to
    run (the image built from ``build:``, a stand-in for an image that cannot be pulled)."""

    def __init__(self, podman: Podman, images: dict[str, str], work: Path, run_id: str) -> None:
        self.podman = podman
        self.images = images
        self.project = compose_file().get("name", "compose")
        self.pod = f"{self.project}-{run_id}"
        self.hosts = work / "hosts"
        spec = compose_file()["services"]
        for name, service in spec.items():
            unknown = set(service) - KNOWN_KEYS
            assert not unknown, f"service {name}: teach tests/image/compose.py {sorted(unknown)}"
        self.services = {
            name: Service(name, spec[name], f"{self.pod}-{name}") for name in start_order(spec)
        }
        self.volumes: list[str] = []

    def run_args(self, service: Service) -> list[str]:
        spec = service.spec
        image = self.images[str(spec["image"])]
        args = ["run", "--detach", f"--name={service.container}", f"--pod={self.pod}"]
        args.append(f"--volume={self.hosts}:/etc/hosts:ro")
        if spec.get("init"):
            args.append("--init")
        if spec.get("read_only"):
            args.append("--read-only")
        args += [f"--tmpfs={path}" for path in spec.get("tmpfs", [])]
        if "user" in spec:
            args.append(f"--user={spec['user']}")
        args += [f"--cap-drop={cap}" for cap in spec.get("cap_drop", [])]
        args += [f"--security-opt={opt}" for opt in spec.get("security_opt", [])]
        for name, value in (spec.get("environment") or {}).items():
            args.append(f"--env={name}={resolve(value)}")
        for volume in spec.get("volumes", []):
            source, _, target = str(volume).partition(":")
            assert not source.startswith(("/", ".")), f"{service.name}: bind mounts unsupported"
            named = f"{self.pod}_{source}"
            if named not in self.volumes:
                self.podman.run("volume", "create", named)
                self.volumes.append(named)
            args.append(f"--volume={named}:{target}")
        if "restart" in spec:
            args.append(f"--restart={spec['restart']}")
        args.append(f"--stop-timeout={service.grace}")
        args.append(image)
        args += [str(part) for part in spec.get("command", [])]
        return args

    def healthy(self, service: Service) -> bool:
        test = self.health_test_of(service)
        if test is None:
            return True
        result = self.podman.run("exec", service.container, *test, check=False, timeout=30)
        return result.returncode == 0

    def health_test_of(self, service: Service) -> list[str] | None:
        declared = service.health_test()
        if declared is not None:
            return declared
        # No healthcheck key: the image's own HEALTHCHECK applies (the receiver's).
        image = self.images[str(service.spec["image"])]
        check: Any = self.podman.inspect("image", image).get("Healthcheck")
        if not check or not check.get("Test"):
            return None
        test = [str(t) for t in check["Test"]]
        return test[1:] if test[0] == "CMD" else ["sh", "-c", test[1]]

    def wait_healthy(self, service: Service, within: float = 90) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            state = self.podman.out("inspect", "--format", "{{.State.Status}}", service.container)
            assert state == "running", (
                f"{service.name} is {state}:\n{self.podman.logs(service.container)}"
            )
            if self.healthy(service):
                return
            time.sleep(0.5)
        raise AssertionError(
            f"{service.name} not healthy within {within:.0f} s:\n"
            f"{self.podman.logs(service.container)}"
        )

    def up(self) -> None:
        self.hosts.write_text(f"127.0.0.1 localhost {' '.join(self.services)}\n")
        self.podman.run("pod", "create", f"--name={self.pod}", "--network=none")
        for service in self.services.values():
            for dependency, rule in (service.spec.get("depends_on") or {}).items():
                if rule.get("condition") == "service_healthy":
                    self.wait_healthy(self.services[dependency])
            self.podman.run(*self.run_args(service))
            say(f"compose: {service.name} started")
        for service in self.services.values():
            self.wait_healthy(service)

    def in_pod(self, image: str, code: str, timeout: float = 60) -> str:
        """Run Python ``code`` in a throw-away container inside the pod (its network)."""
        return self.podman.out(
            "run",
            "--rm",
            f"--pod={self.pod}",
            f"--volume={self.hosts}:/etc/hosts:ro",
            "--entrypoint=python",
            image,
            "-c",
            code,
            timeout=timeout,
        )

    def down(self, on_stop: Callable[[Service, float, int], None] | None = None) -> None:
        """Stop in reverse start order (dependents first), each with its grace period."""
        for service in reversed(self.services.values()):
            took, code = self.podman.stop(service.container, service.grace)
            if on_stop is not None:
                on_stop(service, took, code)

    def remove(self) -> None:
        self.podman.run("pod", "rm", "--force", "--time=0", self.pod, check=False)
        for volume in self.volumes:
            self.podman.run("volume", "rm", "--force", volume, check=False)
