"""Podman for the image check: a containers.conf of its own, the base image (pulled, or a
stand-in bootstrapped from Debian packages when it cannot be), the build with the host's pip
configuration, and running containers.

Podman runs as it must on a machine without systemd and with cgroups v1: the cgroupfs manager,
events in a file, no default ulimits, runc. Nothing here touches the host's own containers.conf.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CONTAINERS_CONF = """\
[containers]
default_ulimits = []

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
"""

DEBIAN_MIRRORS = (
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
)
"""Where the stand-in images' packages come from (IMAGE_CHECK_MIRRORS, one per line, overrides)."""

STAND_IN_PYTHON = "localhost/lead-intake-stand-in/python:3.11-bookworm"
STAND_IN_REDIS = "localhost/lead-intake-stand-in/redis:7-bookworm"
DPKG_SLIM = (
    "--dpkgopt=path-exclude=/usr/share/doc/*",
    "--dpkgopt=path-exclude=/usr/share/man/*",
    "--dpkgopt=path-exclude=/usr/share/locale/*",
    "--dpkgopt=path-exclude=/usr/share/info/*",
)


def say(message: str) -> None:
    """A line of the check's report (pytest runs it with -s)."""
    print(f"image-check: {message}", file=sys.stderr, flush=True)


@contextmanager
def timed(what: str, figures: dict[str, float]) -> Iterator[None]:
    started = time.monotonic()
    yield
    figures[what] = round(time.monotonic() - started, 1)
    say(f"{what}: {figures[what]:.1f} s")


@dataclass
class Podman:
    """The podman command with this check's configuration."""

    conf_dir: Path
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        conf = self.conf_dir / "containers.conf"
        conf.write_text(CONTAINERS_CONF)
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf)}

    def run(
        self, *args: str, check: bool = True, timeout: float = 120, input: bytes | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["podman", *args],
            env=self.env,
            capture_output=True,
            text=input is None,
            input=input,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"podman {' '.join(args[:3])} ... failed ({result.returncode}):\n"
                f"{_text(result.stdout)}{_text(result.stderr)}"
            )
        return result  # type: ignore[return-value]

    def out(self, *args: str, timeout: float = 120) -> str:
        return str(self.run(*args, timeout=timeout).stdout).strip()

    def exists(self, image: str) -> bool:
        return self.run("image", "exists", image, check=False).returncode == 0

    def pull(self, image: str) -> str | None:
        """Pull ``image``; None when done, else why not (no registry reachable, ...)."""
        result = self.run("pull", "--quiet", image, check=False, timeout=180)
        if result.returncode == 0:
            return None
        lines = [line for line in str(result.stderr).splitlines() if line.strip()]
        return lines[-1] if lines else f"exit {result.returncode}"

    def inspect(self, kind: str, name: str) -> dict[str, object]:
        data = json.loads(self.out(kind, "inspect", name))
        return data[0] if isinstance(data, list) else data  # type: ignore[no-any-return]

    def image_size(self, image: str) -> int:
        return int(self.out("image", "inspect", "--format", "{{.Size}}", image))

    def stop(self, name: str, grace: int) -> tuple[float, int]:
        """SIGTERM, then SIGKILL after ``grace`` seconds: (seconds it took, exit code)."""
        started = time.monotonic()
        self.run("stop", "--time", str(grace), name, timeout=grace + 60)
        took = time.monotonic() - started
        code = int(self.out("inspect", "--format", "{{.State.ExitCode}}", name))
        return took, code

    def logs(self, name: str) -> str:
        result = self.run("logs", name, check=False)
        return _text(result.stdout) + _text(result.stderr)


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value or "")


# --- base images -----------------------------------------------------------------------------


def dockerfile_arg(name: str) -> str:
    """The default of a build ARG declared before the first FROM."""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        found = re.fullmatch(rf"ARG {name}=(\S+)", line.strip())
        if found:
            return found.group(1)
    raise AssertionError(f"the Dockerfile declares no ARG {name}=...")


def mirrors() -> list[str]:
    given = os.environ.get("IMAGE_CHECK_MIRRORS", "").strip()
    return given.splitlines() if given else list(DEBIAN_MIRRORS)


def bootstrap(
    podman: Podman, image: str, packages: Sequence[str], changes: Sequence[str], hook: str = ""
) -> None:
    """A Debian bookworm root file system with ``packages`` (mmdebstrap), imported as
    ``image`` with the Dockerfile instructions ``changes``."""
    assert shutil.which("mmdebstrap"), "mmdebstrap is needed to bootstrap a stand-in base image"
    tarball = podman.conf_dir / "rootfs.tar"
    command = [
        "mmdebstrap",
        "--quiet",
        "--variant=essential",
        f"--include={','.join(packages)}",
        *DPKG_SLIM,
        *([f"--customize-hook={hook}"] if hook else []),
        "bookworm",
        str(tarball),
        *mirrors(),
    ]
    made = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    assert made.returncode == 0, f"mmdebstrap failed:\n{made.stderr[-3000:]}"
    try:
        podman.run("import", *(f"--change={c}" for c in changes), str(tarball), image, timeout=600)
    finally:
        tarball.unlink(missing_ok=True)


PATH_ENV = "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def python_base(podman: Podman, wanted: str) -> str:
    """``wanted`` when it is here or can be pulled, else the Debian stand-in (built once)."""
    if podman.exists(wanted):
        return wanted
    why = podman.pull(wanted)
    if why is None:
        return wanted
    say(f"{wanted} cannot be pulled ({why})")
    if not podman.exists(STAND_IN_PYTHON):
        say(f"bootstrapping {STAND_IN_PYTHON} from Debian packages (python3.11)")
        bootstrap(
            podman,
            STAND_IN_PYTHON,
            ["passwd", "python3.11", "python3.11-venv", "python-is-python3", "ca-certificates"],
            [PATH_ENV, 'CMD ["python3"]'],
        )
    say(f"base image: {STAND_IN_PYTHON} (a stand-in for {wanted})")
    return STAND_IN_PYTHON


def redis_image(podman: Podman, wanted: str) -> str:
    """The compose file's Redis image, or a Debian stand-in (redis-server as user redis)."""
    if podman.exists(wanted) or podman.pull(wanted) is None:
        return wanted
    if not podman.exists(STAND_IN_REDIS):
        say(f"bootstrapping {STAND_IN_REDIS} from Debian packages (redis-server)")
        bootstrap(
            podman,
            STAND_IN_REDIS,
            ["redis-server"],
            [PATH_ENV, "USER redis", "WORKDIR /data", 'CMD ["redis-server"]'],
            hook='mkdir -p "$1/data" && chroot "$1" chown redis:redis /data',
        )
    say(f"redis image: {STAND_IN_REDIS} (a stand-in for {wanted})")
    return STAND_IN_REDIS


# --- the build -------------------------------------------------------------------------------


def pip_settings(python: str = sys.executable) -> dict[str, str]:
    """The host's pip configuration as pip itself merges it (files, then PIP_* variables)."""
    listed = subprocess.run(
        [python, "-m", "pip", "config", "list"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    settings: dict[str, str] = {}
    from_env: dict[str, str] = {}
    for line in listed.splitlines():
        found = re.fullmatch(r"([^.]+)\.([^=]+)='(.*)'", line.strip())
        if not found:
            continue
        section, key, value = found.groups()
        if section == ":env:":
            from_env[key] = value
        elif section == "global":
            settings[key] = value
    settings.update(from_env)  # pip: a PIP_* variable wins over the files
    return settings


def pip_mounts(settings: dict[str, str]) -> list[str]:
    """The host paths the settings name (certificates, constraints, local indexes and wheel
    folders), to mount read-only at the same place in the build. A ``file://`` index is mounted
    with the folder above it: a PEP 503 index links its files relative to itself."""
    paths: set[Path] = set()
    for value in settings.values():
        for word in value.split():
            local = word.removeprefix("file://")
            if not local.startswith("/"):
                continue
            path = Path(local.rstrip("/"))
            if word.startswith("file://"):
                path = path.parent
            if path.exists():
                paths.add(path)
    # Keep only the outermost of nested paths: one mount covers what is under it.
    outer = [p for p in paths if not any(q != p and q in p.parents for q in paths)]
    return sorted(str(p) for p in outer)


def build(podman: Podman, tag: str, base: str, build_args: dict[str, str], work: Path) -> None:
    """``podman build`` of the repository with the host's pip configuration mounted in."""
    settings = pip_settings()
    conf = configparser.ConfigParser(interpolation=None)
    conf["global"] = settings
    pip_conf = work / "pip.conf"
    with pip_conf.open("w") as handle:
        conf.write(handle)
    volumes = [f"{pip_conf}:/etc/pip.conf:ro"]
    volumes += [f"{path}:{path}:ro" for path in pip_mounts(settings)]
    args = {"BASE_IMAGE": base, **build_args}
    podman.run(
        "build",
        "--format=docker",  # keeps the HEALTHCHECK (the OCI format has none)
        "--network=host",
        "--pull=never",
        *(f"--volume={v}" for v in volumes),
        *(f"--build-arg={k}={v}" for k, v in args.items()),
        f"--tag={tag}",
        str(ROOT),
        timeout=1200,
    )
