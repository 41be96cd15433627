"""Process settings: INTAKE_* variables and Kubernetes-style secret files."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.config.settings import load_settings


def test_secret_files_named_after_the_setting_are_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "close_api_key").write_text("key-from-file\n")
    (tmp_path / "admin_token").write_text("one,two")
    monkeypatch.setenv("INTAKE_SECRETS_DIR", str(tmp_path))
    settings = load_settings()
    assert settings.close_api_key is not None
    assert settings.close_api_key.get_secret_value() == "key-from-file"
    assert settings.admin_tokens == ("one", "two")
    assert "key-from-file" not in repr(settings)  # secrets never print


def test_environment_wins_over_a_secret_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "close_api_key").write_text("from-file")
    monkeypatch.setenv("INTAKE_SECRETS_DIR", str(tmp_path))
    monkeypatch.setenv("INTAKE_CLOSE_API_KEY", "from-env")
    settings = load_settings()
    assert settings.close_api_key is not None
    assert settings.close_api_key.get_secret_value() == "from-env"


def test_defaults_without_environment() -> None:
    settings = load_settings()
    assert (settings.port, settings.key_prefix, settings.sources_file) == (
        8080,
        "intake",
        Path("config/sources.yaml"),
    )
    assert settings.close_api_key is None and settings.admin_tokens == ()
