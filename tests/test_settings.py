"""Settings come from the environment; a bad value stops start-up with a message naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from portal import env

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("raw", "expected"), [("true", True), ("1", True), ("ON", True), ("false", False), ("0", False)]
)
def test_it_reads_booleans(monkeypatch, raw, expected):
    monkeypatch.setenv("FLAG", raw)
    assert env.env_bool("FLAG") is expected


def test_it_refuses_an_unclear_boolean(monkeypatch):
    monkeypatch.setenv("FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="FLAG must be a boolean"):
        env.env_bool("FLAG")


def test_it_refuses_a_bad_or_too_small_number(monkeypatch):
    monkeypatch.setenv("N", "many")
    with pytest.raises(ImproperlyConfigured, match="N must be a whole number"):
        env.env_int("N", 1)
    monkeypatch.setenv("N", "0")
    with pytest.raises(ImproperlyConfigured, match="at least 1"):
        env.env_int("N", 5, minimum=1)


def test_it_splits_lists_and_drops_blanks(monkeypatch):
    monkeypatch.setenv("HOSTS", " api.example.com, ,api2.example.com ")
    assert env.env_list("HOSTS") == ["api.example.com", "api2.example.com"]


def test_it_reads_a_secret_from_a_file(monkeypatch, tmp_path):
    secret = tmp_path / "token"
    secret.write_text("from-file\n")
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN_FILE", str(secret))
    assert env.env_secret("CLOUDFLARE_API_TOKEN") == "from-file"


def test_it_generates_a_secret_once_and_keeps_it_private(tmp_path):
    path = tmp_path / "var" / "secret_key"
    first = env.generated_secret(path)
    assert env.generated_secret(path) == first
    assert len(first) >= 50
    assert path.stat().st_mode & 0o077 == 0


def start_django(tmp_path, **overrides: str) -> subprocess.CompletedProcess:
    read_by_settings = ("CLOUDFLARE_", "DEBUG", "SECRET_KEY", "EMAIL_")
    environment = {k: v for k, v in os.environ.items() if not k.startswith(read_by_settings)}
    environment.update({"PORTAL_VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "portal.settings", **overrides})
    code = "import django; django.setup(); from django.conf import settings; print(settings.CLOUDFLARE_EMULATED)"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
    )


def test_it_requires_a_secret_key_when_debug_is_off(tmp_path):
    result = start_django(tmp_path, DEBUG="false")
    assert result.returncode != 0
    assert "SECRET_KEY is required when DEBUG is off" in result.stderr


def test_it_generates_a_secret_key_into_var_when_debug_is_on(tmp_path):
    result = start_django(tmp_path, DEBUG="true")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "secret_key").exists()


def test_it_uses_the_emulator_only_when_no_token_is_set(tmp_path):
    assert start_django(tmp_path, DEBUG="true").stdout.strip() == "True"
    real = start_django(
        tmp_path,
        DEBUG="true",
        CLOUDFLARE_API_TOKEN="t",
        CLOUDFLARE_ZONE_ID="0" * 32,
        PORTAL_API_HOSTNAMES="api.example.com",
    )
    assert real.stdout.strip() == "False", real.stderr


def test_it_requires_the_api_hostnames_with_a_real_token(tmp_path):
    result = start_django(tmp_path, DEBUG="true", CLOUDFLARE_API_TOKEN="t", CLOUDFLARE_ZONE_ID="0" * 32)
    assert result.returncode != 0
    assert "PORTAL_API_HOSTNAMES is required" in result.stderr


def test_it_requires_a_zone_id_with_a_real_token(tmp_path):
    result = start_django(tmp_path, DEBUG="true", CLOUDFLARE_API_TOKEN="t")
    assert result.returncode != 0
    assert "CLOUDFLARE_ZONE_ID is required" in result.stderr
    assert (
        "t" not in result.stderr.split("ImproperlyConfigured:")[-1].replace("the", "").split()
    )  # no echo of the token
