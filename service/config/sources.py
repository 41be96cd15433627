"""The sources file (``config/sources.yaml``): one entry per form or webhook endpoint.

Loaded and validated at start; a bad file raises ``ConfigError`` listing every problem with
its file and key path, and the process exits non-zero. The presets are resolved here, once: a
source's ``auth`` inherits its preset's scheme, and :class:`Sources` carries the registry the
mappers and the door use.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from service.config.auth import AuthSpec, validate_source_auth
from service.config.followup import FollowupSpec
from service.config.hydration import HydrateSpec, inherit_preset_hydrate
from service.config.policy import (
    BodyLimits,
    CaptchaSpec,
    CorsSpec,
    FilesPolicy,
    HoneypotSpec,
    RateLimitSpec,
    RedirectSpec,
)
from service.config.presets import PresetRegistry, bundled_presets
from service.errors import ConfigError, ConfigIssue
from service.mapping import CloseSchema, Mapper
from service.mapping.spec import MappingSpec

SOURCE_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"


# Form fields that differ on every submit of the same form (CAPTCHA tokens) or steer the
# answer: left out of the body hash that recognises a double submit.
DEFAULT_HASH_IGNORED = (
    "cf-turnstile-response",
    "g-recaptcha-response",
    "h-captcha-response",
    "_redirect",
    "_next",
)


class DedupSpec(BaseModel):
    """How repeats are recognised: the same delivery, and the same person."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    on_match: Literal["note", "contact", "skip", "create"] = "note"
    """When the person already has a lead: attach the note (``note``), add them as a contact
    if missing plus the note (``contact``), do nothing (``skip``: only an identity link's
    ``link`` policy is applied), or make a new lead."""
    choose: Literal["recently_updated", "recently_created", "oldest"] = "recently_updated"
    """Which lead to use when Close finds several for the person."""
    event_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=60)
    """How long a sender's event id (Idempotency-Key, webhook-id...) is remembered."""
    body_window_seconds: int = Field(default=600, ge=0)
    """Without an event id, the same body within this window is the same delivery (0: off)."""
    hash_ignored_fields: tuple[str, ...] = DEFAULT_HASH_IGNORED
    link: Literal["merge", "flag", "ignore"] = "flag"
    """When one submission's email and phone lead to two different leads (the person's
    submissions made one each): merge them in Close, the older lead kept (``merge``); list the
    pair as a possible duplicate, kept in Redis and counted (``flag``); or only
    note it in the record (``ignore``). A merge the limits below refuse is flagged instead."""
    merge_created_here_only: bool = True
    """``merge`` only leads this service created (its records say so); others are flagged."""
    merge_window_seconds: int = Field(default=24 * 3600, ge=0)
    """``merge`` only while the newer lead is at most this old (Close's ``date_created``);
    after that the pair is flagged (a rep may be working both)."""


class SourceConfig(MappingSpec):
    """One endpoint, ``POST /hooks/<name>``: what it accepts and how it maps to a lead."""

    kind: Literal["form", "webhook"]
    description: str = ""
    max_body_bytes: int | None = Field(default=None, ge=1, le=64 * 1024 * 1024)
    dedup: DedupSpec = Field(default_factory=DedupSpec)
    followup: FollowupSpec | None = None
    """After the lead: owner, task, sequence, update, opportunity, custom activity
    (``followup.py``)."""

    # At the door (service/receiver/policy.py and auth/spec.py say what each key means).
    auth: AuthSpec | None = None
    """Who may post: a signature or token scheme with its secrets (env:/file: references);
    with a preset, only ``secrets`` are needed. None: anyone may post."""
    cors: CorsSpec | None = None
    redirect: RedirectSpec | None = None
    honeypot: HoneypotSpec | None = None
    captcha: CaptchaSpec | None = None
    rate_limit: RateLimitSpec | None = None
    files: FilesPolicy = "drop"
    body_limits: BodyLimits = Field(default_factory=BodyLimits)
    hydrate: HydrateSpec | None = None
    """Fetch the person a thin payload names from the provider (``config/hydration.py``);
    with a preset that hydrates, only the tokens are needed."""

    @model_validator(mode="before")
    @classmethod
    def _inherit_preset_auth(cls, data: Any, info: ValidationInfo) -> Any:
        presets = (info.context or {}).get("presets") or bundled_presets()
        data = inherit_preset_auth(data, presets)
        preset = data.get("preset") if isinstance(data, dict) else None
        return inherit_preset_hydrate(data, presets.hydrate_of(preset))

    @field_validator("auth", mode="wrap")
    @classmethod
    def _auth(cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
        try:
            return validate_source_auth(value, handler)
        except ValidationError as exc:
            preset = info.data.get("preset")
            presets = (info.context or {}).get("presets") or bundled_presets()
            no_scheme = any(err["type"] == "auth_scheme" for err in exc.errors())
            if no_scheme and isinstance(preset, str) and preset not in presets:
                raise ValueError(
                    f"auth has no scheme: the preset {preset!r} is unknown, so it gives none "
                    f"(known presets: {', '.join(presets.names())}); correct the preset's "
                    "name, or give auth.scheme"
                ) from None
            raise


def inherit_preset_auth(data: Any, presets: PresetRegistry) -> Any:
    """Fill a source's ``auth`` from its preset's: the preset gives the scheme and headers, the
    source its secrets and any override. A source naming another scheme takes nothing."""
    if not isinstance(data, dict):
        return data
    own, preset = data.get("auth"), data.get("preset")
    if not isinstance(own, dict) or not isinstance(preset, str):
        return data
    base = presets.auth_of(preset)
    if not base or ("scheme" in own and own["scheme"] != base.get("scheme")):
        return data
    return {**data, "auth": {**base, **own}}


class Sources:
    """The validated sources, by name, and the presets they were resolved with."""

    def __init__(
        self,
        by_name: Mapping[str, SourceConfig],
        path: Path | None = None,
        presets: PresetRegistry | None = None,
    ) -> None:
        self._by_name = dict(by_name)
        self.path = path
        self.presets = presets or bundled_presets()

    def get(self, name: str) -> SourceConfig | None:
        return self._by_name.get(name)

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def items(self) -> list[tuple[str, SourceConfig]]:
        return sorted(self._by_name.items())

    def hydrating(self) -> list[str]:
        """The sources that fetch people from a provider (a ``hydrate`` block)."""
        return [name for name, source in self.items() if source.hydrate is not None]


def loc_path(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts)


def validate_sources(
    data: Any, *, file: str | None = None, presets: PresetRegistry | None = None
) -> tuple[Sources, list[ConfigIssue]]:
    """Validate each source on its own: the valid ones, and every issue of the others."""
    presets = presets or bundled_presets()
    issues: list[ConfigIssue] = []
    valid: dict[str, SourceConfig] = {}
    if not isinstance(data, dict):
        return Sources({}), [
            ConfigIssue("", "the file must be a mapping with a 'sources' key", file)
        ]
    unknown = sorted(set(data) - {"sources"})
    for key in unknown:
        issues.append(ConfigIssue(str(key), "unknown top-level key (only 'sources')", file))
    entries = data.get("sources")
    if not isinstance(entries, dict) or not entries:
        issues.append(ConfigIssue("sources", "must map source names to their settings", file))
        return Sources({}), issues
    for name, entry in entries.items():
        if not isinstance(name, str) or not re.match(SOURCE_NAME_PATTERN, name):
            issues.append(
                ConfigIssue(
                    f"sources.{name}",
                    "source names are 1-63 characters of a-z, 0-9, '-' and '_' "
                    "(they appear in URLs and Redis keys)",
                    file,
                )
            )
            continue
        try:
            valid[name] = SourceConfig.model_validate(entry, context={"presets": presets})
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                path = loc_path(("sources", name, *err["loc"]))
                issues.append(ConfigIssue(path, err["msg"].removeprefix("Value error, "), file))
    return Sources(valid, presets=presets), issues


def parse_sources(data: Any, *, file: str | None = None) -> Sources:
    """Validate already-parsed YAML/JSON data; raise ConfigError with every issue."""
    sources, issues = validate_sources(data, file=file)
    if issues:
        raise ConfigError(issues)
    return sources


def read_sources_file(path: Path) -> Any:
    """The parsed YAML of the sources file (ConfigError when unreadable or not YAML)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([ConfigIssue("", f"cannot read: {exc.strerror}", str(path))]) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([ConfigIssue(where, f"not valid YAML: {problem}", str(path))]) from None


def load_sources(path: Path) -> Sources:
    """Read and validate the sources file at ``path``."""
    sources = parse_sources(read_sources_file(path), file=str(path))
    sources.path = path
    return sources


def build_mappers(sources: Sources, schema: CloseSchema | None) -> dict[str, Mapper]:
    """One compiled mapper per source; every problem of every source in one ConfigError."""
    presets = sources.presets
    mappers: dict[str, Mapper] = {}
    issues: list[ConfigIssue] = []
    for name, source in sources.items():
        try:
            mappers[name] = Mapper(source, source=name, presets=presets, schema=schema)
        except ConfigError as exc:
            issues.extend(exc.issues)
    if issues:
        raise ConfigError(issues)
    return mappers


def build_mappers_issues(sources: Sources, schema: CloseSchema | None) -> list[ConfigIssue]:
    """Every mapping problem of every source (empty when all compile)."""
    try:
        build_mappers(sources, schema)
    except ConfigError as exc:
        return list(exc.issues)
    return []
