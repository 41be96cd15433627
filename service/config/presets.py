"""Provider presets: one YAML data file per provider under ``service/config/presets/``.

A preset holds what a source would otherwise write itself: the ``extract`` expressions for the
provider's payload, the expression giving the provider's event id (delivery dedup), the
signature scheme (``auth``: a scheme of ``auth.py`` with the provider's headers, never secrets;
a source adds those), the content types it sends, and optionally which part of the payload the
note lists (``note_fields``) and the note's title. The mapping engine sees a preset as the
:class:`~service.mapping.MappingPreset` it extends.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from service.config.auth import AuthSpec, preset_auth_problem
from service.config.hydration import PROVIDER_TITLES, preset_hydrate_problem
from service.errors import ConfigError, ConfigIssue
from service.mapping.jmes import compile_expression
from service.mapping.spec import MappingPreset, canonical_field_error

logger = logging.getLogger(__name__)

PACKAGE_DIR = "presets"


@dataclass(frozen=True)
class Preset(MappingPreset):
    """One provider's mapping (the fields of :class:`MappingPreset`) and delivery facts."""

    description: str = ""
    kind: Literal["form", "webhook"] = "webhook"
    """Who posts it: the visitor's browser (``form``) or the provider's server."""
    content_types: tuple[str, ...] = ("application/json",)
    auth: Mapping[str, Any] | None = None
    """The provider's signature scheme and headers (never secrets)."""
    docs: str | None = None
    hydrate: Mapping[str, Any] | None = None
    """The provider's fetch: ``provider``, ``id`` (and ``account``...), never tokens."""
    always_accept: bool = False
    """The provider treats any answer but 2xx as a failed delivery (it retries, then drops
    it): the door never refuses a payload of this preset with 422, the worker rejects it."""


class _PresetFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str
    docs: str | None = None
    kind: Literal["form", "webhook"] = "webhook"
    content_types: list[str] = Field(default_factory=lambda: ["application/json"])
    event_id: str | None = None
    auth: dict[str, Any] | None = None
    note_title: str | None = None
    note_fields: str | None = None
    split: str | None = None
    hydrate: dict[str, Any] | None = None
    always_accept: bool = False
    extract: dict[str, str]


@dataclass(frozen=True)
class PresetRegistry:
    """The known presets by name."""

    presets: Mapping[str, Preset] = field(default_factory=dict)

    def get(self, name: str) -> Preset:
        """The preset called ``name``; KeyError when there is none."""
        return self.presets[name]

    def names(self) -> list[str]:
        return sorted(self.presets)

    def __contains__(self, name: object) -> bool:
        return name in self.presets

    def __iter__(self) -> Iterator[Preset]:
        return iter(self.presets[name] for name in self.names())

    def hydrate_of(self, name: str | None) -> Mapping[str, Any] | None:
        """The ``hydrate`` block of the preset called ``name`` (None: it sends whole people)."""
        preset = self.presets.get(name) if name else None
        return preset.hydrate if preset is not None else None

    def auth_of(self, name: str | None) -> Mapping[str, Any] | None:
        """The ``auth`` block of the preset called ``name`` (None: unknown, or it does not
        sign)."""
        preset = self.presets.get(name) if name else None
        return preset.auth if preset is not None else None


@functools.cache
def bundled_presets() -> PresetRegistry:
    """The presets shipped with the service, read once per process."""
    return load_presets()


def _issues_of(data: _PresetFile, where: str) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    for path, expression in data.extract.items():
        problem = canonical_field_error(path)
        if problem is None:
            _, problem = compile_expression(expression)
        if problem:
            issues.append(ConfigIssue(f"extract.{path}", problem, where))
    for key in ("event_id", "note_fields", "split"):
        expression = getattr(data, key)
        if expression is not None:
            _, problem = compile_expression(expression)
            if problem:
                issues.append(ConfigIssue(key, problem, where))
    if data.auth is not None:
        issues.extend(_auth_issues(data.auth, where))
    if data.hydrate is not None:
        problem = preset_hydrate_problem(data.hydrate)
        for key in ("id", "account"):
            if problem is None and data.hydrate.get(key) is not None:
                _, problem = compile_expression(str(data.hydrate[key]))
        if problem:
            issues.append(ConfigIssue("hydrate", problem, where))
    return issues


_AUTH = TypeAdapter(AuthSpec)


def _auth_issues(block: Mapping[str, Any], where: str) -> list[ConfigIssue]:
    """The preset's ``auth`` must be a valid scheme (headers, encodings), without secrets."""
    problem = preset_auth_problem(block)
    if problem:
        return [ConfigIssue("auth", problem, where)]
    try:
        _AUTH.validate_python(dict(block))
    except ValidationError as exc:
        return [
            ConfigIssue(".".join(("auth", *(str(p) for p in err["loc"][1:]))), err["msg"], where)
            for err in exc.errors(include_url=False)
        ]
    return []


def parse_preset(text: str, where: str, expected_name: str | None = None) -> Preset:
    """A preset from YAML text; ConfigError listing every problem."""
    try:
        raw = yaml.safe_load(text)
        data = _PresetFile.model_validate(raw)
    except yaml.YAMLError as exc:
        raise ConfigError([ConfigIssue("", f"not valid YAML: {exc}", where)]) from exc
    except ValidationError as exc:
        raise ConfigError(
            ConfigIssue(".".join(str(p) for p in err["loc"]), err["msg"], where)
            for err in exc.errors()
        ) from exc
    issues = _issues_of(data, where)
    if expected_name is not None and data.name != expected_name:
        issues.append(ConfigIssue("name", f"must be {expected_name!r} (the file name)", where))
    if issues:
        raise ConfigError(issues)
    return Preset(
        name=data.name,
        description=data.description,
        kind=data.kind,
        extract=MappingProxyType(dict(data.extract)),
        content_types=tuple(data.content_types),
        event_id=data.event_id,
        auth=MappingProxyType(dict(data.auth)) if data.auth is not None else None,
        docs=data.docs,
        note_fields=data.note_fields,
        note_title=data.note_title,
        split=data.split,
        fetch_id=str(data.hydrate["id"]) if data.hydrate else None,
        provider=PROVIDER_TITLES.get(str(data.hydrate.get("provider"))) if data.hydrate else None,
        hydrate=MappingProxyType(dict(data.hydrate)) if data.hydrate is not None else None,
        always_accept=data.always_accept,
    )


def _package_files() -> Iterator[tuple[str, str]]:
    folder = resources.files("service.config").joinpath(PACKAGE_DIR)
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith((".yaml", ".yml")):
            yield entry.name, entry.read_text(encoding="utf-8")


def _dir_files(directory: Path) -> Iterator[tuple[str, str]]:
    for path in sorted(directory.glob("*.y*ml")):
        yield str(path), path.read_text(encoding="utf-8")


def load_presets(directories: Iterable[Path] = ()) -> PresetRegistry:
    """The bundled presets, plus any ``*.yaml`` in ``directories`` (a later file wins).

    Raises ConfigError listing the problems of every invalid file.
    """
    found: dict[str, Preset] = {}
    issues: list[ConfigIssue] = []
    sources = [_package_files(), *(_dir_files(Path(d)) for d in directories)]
    for files in sources:
        for where, text in files:
            stem = Path(where).name.rsplit(".", 1)[0]
            try:
                preset = parse_preset(text, where, expected_name=stem)
            except ConfigError as exc:
                issues.extend(exc.issues)
                continue
            if preset.name in found:
                logger.info("preset %s from %s replaces the earlier one", preset.name, where)
            found[preset.name] = preset
    if issues:
        raise ConfigError(issues)
    return PresetRegistry(MappingProxyType(found))


# -- what `lead-intake presets` shows ------------------------------------------------------------


def preset_summary(preset: Preset) -> str:
    """One line: the description, and the auth scheme when the provider signs."""
    scheme = preset.auth.get("scheme") if preset.auth else None
    return preset.description + (f" [auth: {scheme}]" if scheme else "")


def _auth_line(auth: Mapping[str, Any]) -> str:
    details = ", ".join(f"{key} {value}" for key, value in auth.items() if key != "scheme")
    return f"{auth['scheme']}" + (f" ({details})" if details else "")


def preset_details(preset: Preset) -> list[str]:
    """Everything about one preset: facts, what a source must add, the fields, an example."""
    lines = [f"{preset.name}: {preset.description}", ""]
    facts = [
        ("docs", preset.docs or "-"),
        ("kind", preset.kind),
        ("content types", ", ".join(preset.content_types)),
        ("auth", _auth_line(preset.auth) if preset.auth else "none (the provider does not sign)"),
        ("event id", preset.event_id or "none (repeats are recognised by the body's hash)"),
        ("note title", preset.note_title or "Web form submission"),
    ]
    lines += [f"{label + ':':<15}{value}" for label, value in facts]
    lines += ["", "needs:"]
    if preset.auth:
        lines.append(
            "  the provider's secret (signing secret or key) in the source: auth: {secrets: "
            "[env:NAME]} "
            "(the preset gives the scheme and headers)"
        )
    else:
        lines.append(
            "  nothing but the source's name and kind (anyone may post: see docs/"
            "sources-and-auth.md for a token, CORS and rate limits)"
        )
    lines += ["", "fields (canonical field: expression over the request):"]
    lines += [f"  {path}: {expr}" for path, expr in preset.extract.items()]
    name = preset.name.replace("generic-", "my-")
    example = ["sources:", f"  {name}:", f"    kind: {preset.kind}", f"    preset: {preset.name}"]
    if preset.auth:
        secret = name.upper().replace("-", "_") + "_SECRET"
        example += ["    auth:", f"      secrets: [env:{secret}]"]
    lines += ["", "a source using it (config/sources.yaml):", *("  " + e for e in example)]
    return lines
