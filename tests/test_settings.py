"""Settings come from the environment; a bad value stops start-up with a message naming the variable."""

from __future__ import annotations

import os
import secrets
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


# -- fair use of Cloudflare: per-user rates and the budget's reserve ------------------------------------------


@pytest.mark.parametrize(
    ("raw", "count", "period"),
    [("10/h", 10, 3600), ("30/15m", 30, 900), ("100/d", 100, 86400), (" 5/S ", 5, 1), ("2/90s", 2, 90)],
)
def test_it_reads_rates(monkeypatch, raw, count, period):
    monkeypatch.setenv("LIMIT", raw)
    assert env.env_rate("LIMIT", "1/d") == env.Rate(count=count, period=period)


def test_an_unset_or_blank_rate_is_the_default(monkeypatch):
    monkeypatch.delenv("LIMIT", raising=False)
    assert env.env_rate("LIMIT", "7/m") == env.Rate(count=7, period=60)
    monkeypatch.setenv("LIMIT", "  ")
    assert env.env_rate("LIMIT", "7/m") == env.Rate(count=7, period=60)


@pytest.mark.parametrize("raw", ["10", "10/", "10/w", "0/h", "10/0m", "ten/h", "-1/h", "10/h/ip", "1.5/h", "10/ h"])
def test_it_refuses_a_bad_rate_in_one_line_naming_the_variable(monkeypatch, raw):
    monkeypatch.setenv("CERTIFICATE_ISSUE_RATE_LIMIT", raw)
    with pytest.raises(ImproperlyConfigured) as caught:
        env.env_rate("CERTIFICATE_ISSUE_RATE_LIMIT", "10/h")
    message = str(caught.value)
    assert message.startswith("CERTIFICATE_ISSUE_RATE_LIMIT must be a rate such as 10/h")
    assert "\n" not in message


def test_a_rate_says_the_most_it_lets_through_in_a_longer_span():
    assert env.Rate(count=10, period=3600).most_in(3600) == 10
    assert env.Rate(count=10, period=3600).most_in(900) == 10
    assert env.Rate(count=10, period=3600).most_in(5400) == 20


def fair_use_settings(tmp_path, **overrides: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDFLARE_", "CERTIFICATE_"))}
    environment.update({"PORTAL_VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "portal.settings", "DEBUG": "true"})
    environment.update(overrides)
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "issue, revoke = s.CERTIFICATE_ISSUE_RATE_LIMIT, s.CERTIFICATE_REVOKE_RATE_LIMIT; "
        "print(s.CLOUDFLARE_BUDGET_RESERVED, issue.count, issue.period, revoke.count, revoke.period)"
    )
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
    )


def test_the_fair_use_defaults(tmp_path):
    result = fair_use_settings(tmp_path)
    assert result.returncode == 0, result.stderr
    # A quarter of the 1,000 calls reserved; 10 certificates an hour; revocations: 10 + 5 held, an hour.
    assert result.stdout.split() == ["250", "10", "3600", "15", "3600"]


def test_the_revocation_default_follows_the_issuance_limit_and_the_maximum_held(tmp_path):
    result = fair_use_settings(
        tmp_path,
        CERTIFICATE_ISSUE_RATE_LIMIT="4/15m",
        CERTIFICATE_MAX_ACTIVE_PER_USER="2",
        CLOUDFLARE_CALL_BUDGET="100",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["25", "4", "900", "6", "900"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"CLOUDFLARE_BUDGET_RESERVED": "1200"}, "CLOUDFLARE_BUDGET_RESERVED must be less than CLOUDFLARE_CALL_BUDGET"),
        ({"CLOUDFLARE_BUDGET_RESERVED": "-1"}, "CLOUDFLARE_BUDGET_RESERVED must be at least 0"),
        ({"CERTIFICATE_ISSUE_RATE_LIMIT": "lots"}, "CERTIFICATE_ISSUE_RATE_LIMIT must be a rate"),
        # 10 an hour plus 5 held: an owner may need 15 revocations an hour, or 25 in two hours.
        ({"CERTIFICATE_REVOKE_RATE_LIMIT": "14/h"}, "CERTIFICATE_REVOKE_RATE_LIMIT must allow at least 15"),
        ({"CERTIFICATE_REVOKE_RATE_LIMIT": "24/2h"}, "CERTIFICATE_REVOKE_RATE_LIMIT must allow at least 25"),
    ],
)
def test_it_refuses_fair_use_settings_that_cannot_work(tmp_path, overrides, message):
    result = fair_use_settings(tmp_path, **overrides)
    assert result.returncode != 0
    assert message in result.stderr


def test_it_accepts_a_revocation_limit_that_covers_what_an_owner_can_hold(tmp_path):
    result = fair_use_settings(tmp_path, CERTIFICATE_REVOKE_RATE_LIMIT="25/2h")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[3:] == ["25", "7200"]


def run_manage(tmp_path, *arguments: str, development_env: str | None, **variables: str) -> subprocess.CompletedProcess:
    """manage.py from a copy of the checkout's entry point whose var/ holds `development_env` (if given)."""
    checkout = tmp_path / secrets.token_hex(4)
    (checkout / "var").mkdir(parents=True)
    (checkout / "manage.py").write_text((ROOT / "manage.py").read_text())
    if development_env is not None:
        (checkout / "var" / "development.env").write_text(development_env)
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("DEBUG", "SECRET_KEY", "CLOUDFLARE_"))}
    environment.update({"PYTHONPATH": str(ROOT), "PORTAL_VAR_DIR": str(tmp_path / "state"), **variables})
    return subprocess.run(
        [sys.executable, str(checkout / "manage.py"), *arguments],
        cwd=checkout,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_manage_py_uses_the_development_settings_make_run_wrote(tmp_path):
    """The README's `manage.py` commands work after `make run`, without setting DEBUG by hand."""
    written = run_manage(tmp_path, "check", development_env="# by make run\nDEBUG=true\n")
    absent = run_manage(tmp_path, "check", development_env=None)
    overridden = run_manage(tmp_path, "check", development_env="DEBUG=true\n", DEBUG="false")

    assert written.returncode == 0, written.stderr
    assert "SECRET_KEY is required" in absent.stderr
    assert "SECRET_KEY is required" in overridden.stderr  # the environment wins over the file


def test_links_in_emails_follow_the_address_the_portal_is_served_at(tmp_path):
    code = "import django; django.setup(); from django.conf import settings; print(settings.PORTAL_BASE_URL)"

    def base_url(**variables: str) -> str:
        environment = {k: v for k, v in os.environ.items() if not k.startswith(("PORTAL_", "DEBUG"))}
        environment.update({"DEBUG": "true", "PORTAL_VAR_DIR": str(tmp_path), **variables})
        result = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip().splitlines()[-1]

    assert base_url() == "http://127.0.0.1:8000"
    assert base_url(PORTAL_ADDRESS="0.0.0.0:9000") == "http://0.0.0.0:9000"
    assert base_url(PORTAL_ADDRESS="0.0.0.0:9000", PORTAL_BASE_URL="https://portal.example.com/") == (
        "https://portal.example.com"
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("API.Example.com., api-eu.example.com", ["api.example.com", "api-eu.example.com"]), ("x.example", ["x.example"])],
)
def test_api_hostnames_are_bare_lowercase_names(monkeypatch, raw, expected):
    monkeypatch.setenv("HOSTS", raw)
    assert env.env_hostnames("HOSTS", []) == expected


@pytest.mark.parametrize(
    "raw", ["https://api.example.com", "api.example.com:443", "api.example.com/v1", "*.example.com", "a b.example.com"]
)
def test_an_api_hostname_no_host_header_can_match_stops_start_up(monkeypatch, raw):
    """`https://api.example.com` would scope every rule to a Host header no client sends: mTLS silently off."""
    monkeypatch.setenv("HOSTS", raw)
    with pytest.raises(ImproperlyConfigured, match="not a hostname"):
        env.env_hostnames("HOSTS", [])


def database_options(tmp_path, url: str, **overrides: str) -> str:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "CLOUDFLARE_"))}
    environment.update(
        {"PORTAL_VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "portal.settings", "DEBUG": "true"},
        DATABASE_URL=url,
        **overrides,
    )
    code = (
        "import django; django.setup(); from django.conf import settings; "
        "print(settings.DATABASES['default'].get('OPTIONS'))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_postgresql_connections_give_up_after_a_few_seconds(tmp_path):
    """A database that never answers must not hang a request, a task or /readyz for ever (libpq's default)."""
    url = "postgres://portal@db.invalid:5432/portal"

    assert database_options(tmp_path, url) == "{'connect_timeout': 5}"
    assert database_options(tmp_path, url, DATABASE_CONNECT_TIMEOUT="2") == "{'connect_timeout': 2}"
    assert database_options(tmp_path, url + "?connect_timeout=9") == "{'connect_timeout': 9}"
