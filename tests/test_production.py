"""Production refuses development stand-ins, `check --deploy` is clean, and every page carries strict headers."""

from __future__ import annotations

import logging
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

from portal.stand_ins import EMULATED_HEADER, warn_about_stand_ins
from tests.support.accounts import signed_in

ROOT = Path(__file__).resolve().parents[1]
PORTAL_HOST = "portal.example.com"

# The production variables the README lists (section "Production").
PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": secrets.token_urlsafe(50),
    "ALLOWED_HOSTS": PORTAL_HOST,
    "CSRF_TRUSTED_ORIGINS": f"https://{PORTAL_HOST}",
    "BEHIND_TLS_PROXY": "true",
    "CLOUDFLARE_API_TOKEN": "a-real-looking-token",
    "CLOUDFLARE_ZONE_ID": "023e105f4ecef8ad9ca31a8372d0c353",
    "PORTAL_API_HOSTNAMES": "api.example.com",
    "EMAIL_HOST": "smtp.example.com",
    "REDIS_URL": "redis://127.0.0.1:6379/11",
    "DATABASE_URL": "postgres://portal@127.0.0.1:5432/portal",
    "PORTAL_BASE_URL": f"https://{PORTAL_HOST}",
}
# Variables the settings read that must not leak in from the shell running the tests.
STRIPPED_PREFIXES = (
    "CLOUDFLARE_",
    "DEBUG",
    "SECRET_KEY",
    "EMAIL_",
    "SECURE_",
    "BEHIND_TLS_PROXY",
    "ALLOWED_HOSTS",
    "PORTAL_BASE_URL",
    "PORTAL_ADDRESS",
)


def run_portal(tmp_path, args: list[str], **variables: str | None) -> subprocess.CompletedProcess:
    """Runs Python in a fresh process with the production environment; a variable set to None is removed."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(STRIPPED_PREFIXES)}
    environment.update({"PORTAL_VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "portal.settings"})
    for name, value in {**PRODUCTION, **variables}.items():
        if value is None:
            environment.pop(name, None)
        else:
            environment[name] = value
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120
    )


def start_up(tmp_path, **variables: str | None) -> subprocess.CompletedProcess:
    code = "import django; django.setup(); from django.conf import settings; print(settings.EMAIL_BACKEND)"
    return run_portal(tmp_path, ["-c", code], **variables)


def refusal(result: subprocess.CompletedProcess) -> str:
    """The one line, and nothing else, that says why start-up stopped."""
    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    prefix = "ImproperlyConfigured: "
    assert lines[0].startswith(prefix), result.stderr
    return lines[0].removeprefix(prefix)


def warnings_in(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if " WARNING portal.stand_ins: " in line]


# -- start-up ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_check_deploy_is_clean_with_the_production_settings(tmp_path):
    result = run_portal(tmp_path, ["manage.py", "check", "--deploy", "--fail-level", "DEBUG"])

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
    assert "WARNING" not in result.stdout + result.stderr


@pytest.mark.slow
def test_check_deploy_still_warns_without_the_tls_proxy(tmp_path):
    # The clean run above is not from silencing everything: without TLS in front, HSTS and the redirect are missing.
    result = run_portal(tmp_path, ["manage.py", "check", "--deploy"], BEHIND_TLS_PROXY=None)

    assert "security.W004" in result.stderr
    assert "security.W008" in result.stderr


@pytest.mark.slow
def test_production_starts_with_a_token_and_smtp_and_warns_about_nothing(tmp_path):
    result = start_up(tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "django.core.mail.backends.smtp.EmailBackend"
    assert warnings_in(result) == []


@pytest.mark.slow
def test_production_refuses_to_start_without_a_cloudflare_token(tmp_path):
    message = refusal(start_up(tmp_path, CLOUDFLARE_API_TOKEN=None))

    assert message.startswith("CLOUDFLARE_API_TOKEN is required")
    assert "CLOUDFLARE_EMULATOR=true" in message


@pytest.mark.slow
def test_check_deploy_warns_when_emails_would_link_to_this_machine(tmp_path):
    result = run_portal(tmp_path, ["manage.py", "check", "--deploy"], PORTAL_BASE_URL=None)

    assert "portal.W001" in result.stderr
    assert "PORTAL_BASE_URL is http://127.0.0.1:8000" in result.stderr


@pytest.mark.slow
def test_manage_py_says_why_it_stops_in_one_line(tmp_path):
    result = run_portal(tmp_path, ["manage.py", "check"], EMAIL_HOST=None)

    assert refusal(result).startswith("EMAIL_HOST is required")


@pytest.mark.slow
def test_production_runs_the_emulator_only_when_asked_and_says_so_once(tmp_path):
    result = start_up(tmp_path, CLOUDFLARE_API_TOKEN=None, CLOUDFLARE_EMULATOR="true")

    assert result.returncode == 0, result.stderr
    emulator_warnings = [line for line in warnings_in(result) if "Cloudflare emulator in use" in line]
    assert len(emulator_warnings) == 1, result.stderr


@pytest.mark.slow
def test_a_token_and_the_emulator_together_are_refused(tmp_path):
    message = refusal(start_up(tmp_path, CLOUDFLARE_EMULATOR="true"))

    assert "CLOUDFLARE_EMULATOR=true and CLOUDFLARE_API_TOKEN contradict each other" in message
    assert PRODUCTION["CLOUDFLARE_API_TOKEN"] not in message


@pytest.mark.slow
def test_production_refuses_a_token_without_redis_for_the_shared_call_budget(tmp_path):
    message = refusal(start_up(tmp_path, REDIS_URL=None))

    assert message.startswith("REDIS_URL is required when CLOUDFLARE_API_TOKEN is set")
    assert PRODUCTION["CLOUDFLARE_API_TOKEN"] not in message


@pytest.mark.slow
def test_production_runs_the_emulator_demo_without_redis(tmp_path):
    # Only a real token shares Cloudflare's limit with other processes; the demo keeps working without Redis.
    result = start_up(tmp_path, REDIS_URL=None, CLOUDFLARE_API_TOKEN=None, CLOUDFLARE_EMULATOR="true")

    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_production_refuses_to_start_without_an_email_host(tmp_path):
    message = refusal(start_up(tmp_path, EMAIL_HOST=None))

    assert message.startswith("EMAIL_HOST is required")
    assert "EMAIL_CONSOLE=true" in message


@pytest.mark.slow
def test_production_prints_mail_to_the_log_only_when_asked_and_says_so(tmp_path):
    result = start_up(tmp_path, EMAIL_HOST=None, EMAIL_CONSOLE="true")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "django.core.mail.backends.console.EmailBackend"
    assert [line for line in warnings_in(result) if "Console email in use" in line], result.stderr


@pytest.mark.slow
def test_an_email_host_and_console_email_together_are_refused(tmp_path):
    message = refusal(start_up(tmp_path, EMAIL_CONSOLE="true"))

    assert "EMAIL_CONSOLE=true and EMAIL_HOST contradict each other" in message


@pytest.mark.slow
def test_development_keeps_the_emulator_and_console_email_by_default(tmp_path):
    result = start_up(
        tmp_path, DEBUG="true", SECRET_KEY=None, CLOUDFLARE_API_TOKEN=None, EMAIL_HOST=None, BEHIND_TLS_PROXY=None
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "django.core.mail.backends.console.EmailBackend"
    assert len(warnings_in(result)) == 2  # the emulator and console email, each named once


# -- HTTPS behind the proxy: HSTS, the redirect, /healthz over plain http ----------------------------------

ANSWERS_SCRIPT = """
import json, django
django.setup()
from django.core.cache import cache
from django.test import Client
client = Client(HTTP_HOST="portal.example.com")
answers = {}
for name, path, headers in [
    ("https", "/healthz", {"HTTP_X_FORWARDED_PROTO": "https"}),
    ("http_probe", "/healthz", {}),
    ("http_page", "/", {}),
]:
    response = client.get(path, **headers)
    answers[name] = {"status": response.status_code, "headers": dict(response.headers)}
print(json.dumps(answers))
"""


def answers(tmp_path, **variables: str | None) -> dict[str, dict]:
    import json

    result = run_portal(tmp_path, ["-c", ANSWERS_SCRIPT], **variables)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.slow
def test_behind_the_tls_proxy_https_answers_carry_hsts_and_plain_http_is_redirected(tmp_path):
    got = answers(tmp_path)

    assert got["https"]["headers"]["Strict-Transport-Security"] == "max-age=31536000"
    assert got["http_page"]["status"] == 301
    assert got["http_page"]["headers"]["Location"] == f"https://{PORTAL_HOST}/"
    # Health probes from inside the cluster come over plain http and must not be redirected.
    assert got["http_probe"]["status"] == 200
    assert "Strict-Transport-Security" not in got["http_probe"]["headers"]


@pytest.mark.slow
def test_hsts_options_come_from_the_settings(tmp_path):
    got = answers(tmp_path, SECURE_HSTS_SECONDS="600", SECURE_HSTS_INCLUDE_SUBDOMAINS="true", SECURE_HSTS_PRELOAD="1")

    assert got["https"]["headers"]["Strict-Transport-Security"] == "max-age=600; includeSubDomains; preload"


@pytest.mark.slow
def test_without_the_tls_proxy_no_hsts_and_no_redirect(tmp_path):
    # An X-Forwarded-Proto header is not trusted then, so the request is plain http.
    got = answers(tmp_path, BEHIND_TLS_PROXY=None)

    assert "Strict-Transport-Security" not in got["https"]["headers"]
    assert got["http_page"]["status"] == 200


# -- the emulator is announced -------------------------------------------------------------------------------


def test_api_answers_say_the_emulator_is_in_use(db, settings):
    settings.CLOUDFLARE_EMULATED = True

    unauthenticated = Client().get("/api/v1/certificates")
    policy = Client().get("/api/v1/openapi.json")

    assert unauthenticated.status_code == 401
    assert unauthenticated[EMULATED_HEADER] == "true"
    assert policy[EMULATED_HEADER] == "true"


def test_answers_carry_no_emulator_header_against_cloudflare(db, settings):
    settings.CLOUDFLARE_EMULATED = False

    assert EMULATED_HEADER not in Client().get("/api/v1/certificates").headers


def test_it_logs_one_warning_per_stand_in(settings, caplog):
    settings.CLOUDFLARE_EMULATED = True
    settings.EMAIL_CONSOLE = False
    with caplog.at_level(logging.WARNING, logger="portal.stand_ins"):
        warn_about_stand_ins()
    assert [r.getMessage() for r in caplog.records] == [
        "Cloudflare emulator in use (no CLOUDFLARE_API_TOKEN): certificates are signed by a local test CA "
        "and do not work against Cloudflare"
    ]

    caplog.clear()
    settings.CLOUDFLARE_EMULATED = False
    with caplog.at_level(logging.WARNING, logger="portal.stand_ins"):
        warn_about_stand_ins()
    assert caplog.records == []


# -- Content-Security-Policy on every page ------------------------------------------------------------------

REQUIRED_DIRECTIVES = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'none'",
    "frame-ancestors": "'none'",
    "form-action": "'self'",
}


def csp_directives(response) -> dict[str, str]:
    policy = response["Content-Security-Policy"]
    return dict(part.strip().split(" ", 1) for part in policy.split(";") if part.strip())


def inline_code(html: str) -> list[str]:
    """Inline scripts, style elements, style attributes and event handlers: what the policy blocks."""
    found = [tag for tag in re.findall(r"<script\b[^>]*>", html) if "src=" not in tag and "application/json" not in tag]
    found += re.findall(r"<style\b", html)
    found += re.findall(r"<[^>]+\sstyle=", html)
    found += re.findall(r"<[^>]+\son[a-z]+=", html)
    found += re.findall(r"javascript:", html)
    return found


def page_as(user, url_name: str):
    client = Client() if user is None else signed_in(user)
    return client.get(url_name if url_name.startswith("/") else reverse(url_name))


@pytest.mark.parametrize(
    ("who", "url_name"),
    [
        (None, "home"),
        (None, "account_login"),
        (None, "account_signup"),
        (None, "account_reset_password"),
        ("alice", "certificates:dashboard"),
        ("alice", "certificates:new"),
        ("alice", "certificates:allowlist"),
        ("alice", "certificates:tokens"),
        ("alice", "account_email"),
        ("alice", "mfa_index"),
        ("charlie", "admin:index"),
        (None, "/api/v1/docs"),
    ],
)
def test_every_page_has_a_strict_csp_and_no_inline_code(emulator, request, who, url_name):
    user = request.getfixturevalue(who) if who else None
    response = page_as(user, url_name)

    assert response.status_code == 200
    directives = csp_directives(response)
    for name, value in REQUIRED_DIRECTIVES.items():
        assert directives.get(name) == value, (name, directives)
    assert "unsafe" not in response["Content-Security-Policy"]
    assert inline_code(response.content.decode()) == []


def test_the_api_docs_load_swagger_from_the_portal_itself(db):
    response = Client().get("/api/v1/docs")

    sources = re.findall(r'<script[^>]*\ssrc="([^"]+)"', response.content.decode())
    assert sources, "the docs page loads Swagger UI"
    assert all(source.startswith("/static/") for source in sources), sources


def test_the_totp_setup_page_needs_data_images_and_nothing_more(alice):
    client = Client()
    client.force_login(alice)
    client.post(reverse("account_reauthenticate"), {"password": "correct horse battery staple"})  # asked for first
    response = client.get(reverse("mfa_activate_totp"))

    assert response.status_code == 200
    assert 'src="data:image/svg+xml' in response.content.decode()  # the QR code, allowed by img-src data:
    assert csp_directives(response)["img-src"] == "'self' data:"
    assert inline_code(response.content.decode()) == []
