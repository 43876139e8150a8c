"""Settings: environment prefix, guards, and nothing built at import."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pdn_ops.core.errors import ConfigError
from pdn_ops.core.settings import load_settings


def test_placeholder_secret_is_refused_outside_demo_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PDN_OPS_SECRET_KEY", raising=False)
    monkeypatch.delenv("PDN_OPS_DEMO", raising=False)
    with pytest.raises(ConfigError, match="PDN_OPS_SECRET_KEY must be set"):
        load_settings()
    assert load_settings(demo=True).demo is True


def test_short_secret_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PDN_OPS_SECRET_KEY", "short")
    with pytest.raises(ConfigError, match="at least 16 characters"):
        load_settings()


def test_environment_prefix_and_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("PDN_OPS_SECRET_KEY", "x" * 32)
    monkeypatch.setenv("PDN_OPS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PDN_OPS_LISTEN", "127.0.0.1:9123")
    settings = load_settings()
    assert settings.timezone == "Asia/Jakarta"
    assert settings.effective_database_url == f"sqlite:///{tmp_path / 'pdn-ops.sqlite3'}"
    assert (settings.host, settings.port) == ("127.0.0.1", 9123)
    assert "x" * 32 not in repr(settings), "the secret key must not show in reprs or logs"


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("PDN_OPS_TIMEZONE", "Mars/Olympus", "PDN_OPS_TIMEZONE: Value error, unknown time zone"),
        ("PDN_OPS_LISTEN", "8000", "PDN_OPS_LISTEN: Value error, listen must be HOST:PORT"),
        ("PDN_OPS_LANGUAGE", "fr", "PDN_OPS_LANGUAGE: Value error, language must be"),
    ],
)
def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch, key: str, value: str, message: str) -> None:
    monkeypatch.setenv("PDN_OPS_SECRET_KEY", "y" * 32)
    monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match=message):
        load_settings()


def test_importing_the_app_builds_nothing() -> None:
    # With a broken environment, importing must still work: settings and engines are built in create_app.
    code = "import pdn_ops.app.factory, pdn_ops.app.cli, pdn_ops.core.db.engine; print('ok')"
    env = {"PDN_OPS_TIMEZONE": "Nowhere/Nothing", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert out.stdout.strip() == "ok", out.stderr
