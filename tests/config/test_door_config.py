"""The door's settings in the sources file, presets and INTAKE_* settings: every mistake is a
start-up error naming its key path, never a surprise in production."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from service.config.presets import load_presets, parse_preset
from service.config.settings import Settings
from service.config.sources import parse_sources
from service.errors import ConfigError


def issues_of(source: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as info:
        parse_sources({"sources": {"s": {"kind": "form", "preset": "generic-form", **source}}})
    return [(issue.path, issue.message) for issue in info.value.issues]


@pytest.mark.parametrize(
    ("source", "path", "fragment"),
    [
        ({"cors": {"origins": ["*"], "credentials": True}}, "sources.s.cors", "wildcard"),
        (
            {"cors": {"origins": ["https://a.test/path"]}},
            "sources.s.cors.origins",
            "without a path",
        ),
        ({"cors": {"origins": []}}, "sources.s.cors.origins", "at least 1"),
        ({"cors": {"origins": ["ftp://a.test"]}}, "sources.s.cors.origins", "scheme://host"),
        ({"redirect": {"success_url": "/thanks"}}, "sources.s.redirect.success_url", "https://"),
        (
            {"redirect": {"error_url": "http://a.test/x"}},
            "sources.s.redirect.error_url",
            "only for localhost",
        ),
        ({"redirect": {"allow": ["https://a.test*"]}}, "sources.s.redirect.allow", "'/*'"),
        ({"rate_limit": {"per_client": "ten a minute"}}, "sources.s.rate_limit.per_client", "N/"),
        ({"files": "keep"}, "sources.s.files", "'drop' or 'refuse'"),
        ({"body_limits": {"json_depth": 0}}, "sources.s.body_limits.json_depth", "greater"),
        ({"honeypot": {}}, "sources.s.honeypot.field", "required"),
    ],
)
def test_bad_door_settings_name_their_key(source: dict[str, Any], path: str, fragment: str) -> None:
    [(where, message)] = issues_of(source)
    assert where == path
    assert fragment in message


def test_good_door_settings_are_normalised() -> None:
    sources = parse_sources(
        {
            "sources": {
                "s": {
                    "kind": "form",
                    "preset": "generic-form",
                    "cors": {"origins": ["https://WWW.Example.com:443/"]},
                    "honeypot": "fax",
                    "rate_limit": {"per_client": "10/minute", "per_source": "5 / 2h"},
                    "redirect": {"success_url": "http://localhost:3000/thanks"},
                }
            }
        }
    )
    source = sources.get("s")
    assert source is not None and source.cors and source.honeypot and source.rate_limit
    assert source.cors.origins == ("https://www.example.com",)
    assert source.honeypot.field == "fax"
    assert source.rate_limit.per_client and source.rate_limit.per_client.per_second == 10 / 60
    assert source.rate_limit.per_source and source.rate_limit.per_source.seconds == 7200


def test_every_bundled_preset_auth_is_a_valid_scheme_without_secrets() -> None:
    presets = {p.name: p for p in load_presets()}
    schemes = {name: (p.auth or {}).get("scheme") for name, p in presets.items()}
    assert schemes == {
        "calcom": "calcom",
        "calendly": "calendly",
        "generic-form": None,
        "generic-json": None,
        "google-ads": "body-key",
        "hubspot": "hubspot",
        "jotform": None,
        "meta-lead-ads": "meta",
        "netlify": "netlify",
        "tally": "tally",
        "typeform": "typeform",
        "unbounce": None,
        "webflow": "webflow",
    }


PRESET = """
name: partner-x
description: test
extract: {{email: body.email}}
auth:
{auth}
"""


@pytest.mark.parametrize(
    ("auth", "path", "fragment"),
    [
        ("  scheme: hmac\n  header: X-Sig\n  secrets: [env:X]", "auth", "never holds secrets"),
        ("  scheme: hmac-sha256", "auth", "auth needs a scheme"),
        ("  scheme: hmac", "auth", "header"),
        ("  scheme: hmac\n  header: X\n  encoding: base32", "auth.encoding", "'hex' or 'base64'"),
    ],
)
def test_a_preset_auth_block_is_validated(auth: str, path: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_preset(PRESET.format(auth=auth), "partner-x.yaml")
    [issue] = info.value.issues
    assert (issue.path, issue.file) == (path, "partner-x.yaml")
    assert fragment in issue.message


def test_trusted_proxies_must_be_networks() -> None:
    assert [str(n) for n in Settings(trusted_proxies="10.0.0.0/8, 127.0.0.1").trusted_networks] == [
        "10.0.0.0/8",
        "127.0.0.1/32",
    ]
    with pytest.raises(ValidationError, match="not an IP network"):
        Settings(trusted_proxies="10.0.0.0/8,proxy.internal")
