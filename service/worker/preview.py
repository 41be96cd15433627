"""``lead-intake map`` for thin and split payloads: which item of a delivery is mapped, and
what the hydrate step would fetch before mapping (or the provider's answer, from a file)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from service.config.presets import bundled_presets
from service.config.settings import Settings
from service.config.sources import SourceConfig
from service.envelope import Envelope
from service.errors import ConfigError, ConfigIssue
from service.mapping import Mapper, MappingSpec
from service.providers import request_of


def hydration_preview(  # noqa: PLR0917 - the CLI passes its arguments through
    settings: Settings,
    spec: MappingSpec,
    mapper: Mapper,
    envelope: Envelope,
    item: int = 0,
    fetched: str | None = None,
) -> tuple[Envelope, dict[str, Any] | None]:
    """``map`` for a payload that is one of several (a split delivery: ``--item N``) or names
    only ids (hydration): the envelope to map (with ``--fetched FILE`` as what the provider
    answered), or, without ``--fetched``, the fetch the worker would make (printed instead)."""
    items = mapper.split(envelope)
    if mapper.splits:
        if not 0 <= item < len(items):
            raise ConfigError([ConfigIssue("--item", f"the delivery holds {len(items)} item(s)")])
        envelope = dataclasses.replace(envelope, body=items[item])
    if fetched is not None:
        answer = json.loads(Path(fetched).read_text(encoding="utf-8"))
        return dataclasses.replace(envelope, fetched=answer), None
    thin_id = mapper.fetch_id(envelope)
    hydrate = spec.hydrate if isinstance(spec, SourceConfig) else None
    block = dict(hydrate.model_dump()) if hydrate else bundled_presets().hydrate_of(spec.preset)
    if block is None or (thin_id is None and block.get("when_id_missing") == "map"):
        return envelope, None
    provider = str(block["provider"])
    urls = {
        "meta-lead-ads": settings.meta_graph_url,
        "hubspot": settings.hubspot_api_url,
        "calendly": settings.calendly_api_url,
    }
    base = (hydrate.base_url if hydrate else None) or urls[provider]
    fetch: dict[str, Any] = {
        "fetch": {
            "provider": provider,
            "id": thin_id,
            "request": request_of(provider, base, thin_id, block.get("fields") or ())
            if thin_id
            else None,
            "token": "the source's hydrate token"
            + (" (none configured: submissions are rejected as ids-only)" if not hydrate else ""),
        },
        "next": "save the provider's answer to a file and run again with --fetched FILE",
    }
    if mapper.splits:
        fetch["items"] = len(items)
    if thin_id is None:
        fetch["rejected"] = "no-person: the payload names no id to fetch"
    return envelope, fetch
