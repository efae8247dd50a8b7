"""Logs (portal/logs.py): JSON lines with the request, user and task they belong to, and no secrets in them."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import re
import runpy
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from django.conf import settings as django_settings
from django.core import mail
from django.test import Client
from django.urls import reverse
from gunicorn.config import Config
from gunicorn.glogging import Logger as GunicornLogger

from certificates.models import ApiToken
from certificates.tasks import reconcile_zone
from cloudflare.client import CloudflareClient
from portal.logs import logging_config
from tests.cloudflare.fixtures import CERT_ID, client_certificate, envelope
from tests.conftest import BASE_URL, ZONE_ID
from tests.support.accounts import signed_in
from tests.support.api import issue_via_api, token_for
from tests.support.pki import make_key, policy_csr
from tests.test_settings import start_django

UUID4_HEX = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
def json_log():
    """The portal's LOGGING with LOG_FORMAT=json, writing into a buffer; returns the lines written so far, parsed."""
    config = logging_config("json", "INFO")
    stream = io.StringIO()
    config["handlers"]["console"]["stream"] = stream
    logging.config.dictConfig(config)

    def lines() -> list[dict]:
        return [json.loads(line) for line in stream.getvalue().splitlines()]

    yield lines
    logging.config.dictConfig(django_settings.LOGGING)


def lines_of(lines: list[dict], logger: str) -> list[dict]:
    return [line for line in lines if line["logger"] == logger]


# -- one JSON object per line ------------------------------------------------------------------------------------


def test_a_line_has_the_time_level_logger_message_exception_and_extras(json_log):
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("portal.test").exception("it failed for %s", "alice", extra={"certificate_id": 7})

    [line] = json_log()
    assert line["level"] == "ERROR"
    assert line["logger"] == "portal.test"
    assert line["message"] == "it failed for alice"
    assert line["certificate_id"] == 7
    assert "ValueError: boom" in line["exception"]
    assert line["time"].endswith("+00:00")  # ISO 8601, UTC


def test_a_bad_log_format_stops_start_up(tmp_path):
    result = start_django(tmp_path, DEBUG="true", LOG_FORMAT="xml")

    assert result.returncode != 0
    assert "LOG_FORMAT must be plain or json, got 'xml'" in result.stderr


def test_with_log_format_json_every_line_the_portal_writes_is_json(tmp_path):
    result = start_django(tmp_path, DEBUG="true", LOG_FORMAT="json")

    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    # The development stand-ins' start-up warnings (portal/stand_ins.py).
    assert {line["logger"] for line in lines} == {"portal.stand_ins"}
    assert all(line["level"] == "WARNING" for line in lines)


# -- request id and user id --------------------------------------------------------------------------------------


def test_a_cloudflare_call_in_an_api_request_logs_the_request_the_user_and_the_call(emulator, api, alice, json_log):
    response = issue_via_api(api, alice)

    assert response.status_code == 201, response.content
    [call] = lines_of(json_log(), "cloudflare.client")
    assert call["request_id"] == response["X-Request-ID"]
    assert UUID4_HEX.fullmatch(call["request_id"])
    assert call["user_id"] == alice.pk
    assert call["level"] == "INFO"
    assert call["method"] == "POST"
    assert call["path"] == f"/zones/{django_settings.CLOUDFLARE_ZONE_ID}/client_certificates"
    assert call["status"] == 200
    assert call["attempt"] == 1
    assert isinstance(call["duration_ms"], int)


def test_a_signed_in_page_logs_the_user_and_an_anonymous_one_does_not(alice, json_log):
    signed_in(alice).get("/no-such-page/", headers={"X-Request-ID": "edge-4f2a.1"})
    Client().get("/no-such-page/", headers={"X-Request-ID": "edge-4f2a.2"})

    # Django logs a 404 after the middleware has returned: the request it carries still names the request id.
    [mine, anonymous] = lines_of(json_log(), "django.request")
    assert (mine["request_id"], mine["user_id"]) == ("edge-4f2a.1", alice.pk)
    assert (anonymous["request_id"], anonymous.get("user_id")) == ("edge-4f2a.2", None)


def test_a_plain_inbound_request_id_is_kept(db):
    response = Client().get("/healthz", headers={"X-Request-ID": "8a1b2c3d4e5f6a7b-AMS"})

    assert response["X-Request-ID"] == "8a1b2c3d4e5f6a7b-AMS"


@pytest.mark.parametrize(
    "inbound",
    ["abc\nlevel=ERROR forged", "a" * 500, 'abc"}, {"forged": true', "", "-leading-dash"],
    ids=["newline", "500 chars", "quotes", "empty", "leading dash"],
)
def test_an_unsafe_inbound_request_id_is_replaced_not_echoed(db, inbound):
    response = Client().get("/healthz", headers={"X-Request-ID": inbound})

    assert response["X-Request-ID"] != inbound
    assert UUID4_HEX.fullmatch(response["X-Request-ID"])


def test_each_request_gets_its_own_id(db):
    client = Client()

    assert client.get("/healthz")["X-Request-ID"] != client.get("/healthz")["X-Request-ID"]


# -- Cloudflare calls --------------------------------------------------------------------------------------------


def test_each_cloudflare_attempt_is_one_line_with_its_number_and_status(cf_http, json_log):
    url = f"{BASE_URL}/zones/{ZONE_ID}/client_certificates/{CERT_ID}"
    cf_http.get(url, body=requests.exceptions.ConnectionError("connection reset by peer"))
    cf_http.get(url, status=503, body="")
    cf_http.get(url, json=envelope(client_certificate()))
    client = CloudflareClient(api_token="t", base_url=BASE_URL, sleep=lambda seconds: None)

    client.get_client_certificate(ZONE_ID, CERT_ID)

    calls = [line for line in lines_of(json_log(), "cloudflare.client") if "attempt" in line]
    assert [(line["attempt"], line.get("status")) for line in calls] == [(1, None), (2, 503), (3, 200)]
    assert "-> no answer in " in calls[0]["message"]
    assert all(line["path"] == f"/zones/{ZONE_ID}/client_certificates/{CERT_ID}" for line in calls)


def test_a_cloudflare_create_logs_neither_the_token_nor_the_csr(cf_http, alice, json_log):
    token = "Zb6fX0lq3mVJ8c1n4rT7yQ2wE5aS9dF0gH3jK6lP"
    csr = policy_csr(alice)
    cf_http.post(f"{BASE_URL}/zones/{ZONE_ID}/client_certificates", json=envelope(client_certificate()))

    CloudflareClient(api_token=token, base_url=BASE_URL).create_client_certificate(ZONE_ID, csr=csr, validity_days=365)

    [call] = lines_of(json_log(), "cloudflare.client")
    assert (call["method"], call["status"]) == ("POST", 200)
    assert token not in json.dumps(call)
    assert csr.splitlines()[1] not in json.dumps(call)


# -- task id -----------------------------------------------------------------------------------------------------


def test_a_task_logs_its_id_and_name(db, emulator, json_log):
    result = reconcile_zone.delay()

    calls = lines_of(json_log(), "cloudflare.client")  # one listing call a status (certificates.services.lifecycle)
    assert calls
    for call in calls:
        assert call["task_id"] == result.id
        assert call["task_name"] == "certificates.tasks.reconcile_zone"
        assert "request_id" not in call


# -- secrets -----------------------------------------------------------------------------------------------------


def private_key_pem() -> str:
    return (
        make_key("rsa")
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode()
    )


def reset_link(client: Client, user) -> str:
    client.post(reverse("account_reset_password"), {"email": user.email})
    return re.search(r"https?://\S+/password/reset/key/\S+", mail.outbox[-1].body)[0]


def confirmation_link(client: Client) -> str:
    client.post(
        reverse("account_signup"),
        {"email": "dora@example.com", "password1": "a long enough passphrase", "password2": "a long enough passphrase"},
    )
    return re.search(r"https?://\S+/confirm-email/\S+", mail.outbox[-1].body)[0]


def secret_of(kind: str, user) -> tuple[str, str]:
    """A real secret of `kind` (made the way the portal or allauth makes it) and the part that must not be logged."""
    if kind == "api token":
        token = ApiToken.generate()
        return token, token[len(ApiToken.PREFIX) :]
    if kind == "bearer header":
        token = "Zb6fX0lq3mVJ8c1n4rT7yQ2wE5aS9dF0gH3jK6lP"  # a Cloudflare API token's shape
        return f"Authorization: Bearer {token}", token
    if kind == "private key":
        pem = private_key_pem()
        return pem, pem.splitlines()[1]
    if kind == "csr":
        pem = policy_csr(user)
        return pem, pem.splitlines()[1]
    if kind == "reset link":
        link = reset_link(Client(), user)
        return link, link.split("/key/")[1].strip("/")
    if kind == "confirmation link":
        link = confirmation_link(Client())
        return link, link.split("/confirm-email/")[1].strip("/")
    raise ValueError(kind)


SECRET_KINDS = ["api token", "bearer header", "private key", "csr", "reset link", "confirmation link"]


@pytest.mark.parametrize("kind", SECRET_KINDS)
def test_a_secret_in_a_message_is_scrubbed(alice, json_log, kind):
    text, secret = secret_of(kind, alice)

    logging.getLogger("portal.test").warning("something went wrong with %s here", text)

    [line] = lines_of(json_log(), "portal.test")
    assert secret not in json.dumps(line)
    assert line["message"].startswith("something went wrong with ")
    assert "[redacted]" in line["message"]


@pytest.mark.parametrize("kind", SECRET_KINDS)
def test_a_secret_in_an_extra_field_or_an_exception_is_scrubbed(alice, json_log, kind):
    text, secret = secret_of(kind, alice)

    try:
        raise RuntimeError(f"Cloudflare refused {text}")
    except RuntimeError:
        logging.getLogger("portal.test").exception("failed", extra={"detail": {"input": [text]}, "body": text})

    [line] = lines_of(json_log(), "portal.test")
    assert secret not in json.dumps(line)
    assert "RuntimeError: Cloudflare refused" in line["exception"]


def test_a_field_named_like_a_secret_is_dropped_whatever_it_holds(json_log):
    logging.getLogger("portal.test").info("made", extra={"token": "anything", "csr": "anything", "hint": "mtp_Ab3d"})

    [line] = json_log()
    assert (line["token"], line["csr"]) == ("[redacted]", "[redacted]")
    assert line["hint"] == "mtp_Ab3d"  # a token's stored hint (prefix and 4 characters) is not the token


def test_the_plain_format_is_scrubbed_too_and_names_the_request(alice):
    config = logging_config("plain", "INFO")
    stream = io.StringIO()
    config["handlers"]["console"]["stream"] = stream
    logging.config.dictConfig(config)
    try:
        token = token_for(alice)
        Client().get("/no-such-page/", headers={"Authorization": f"Bearer {token}", "X-Request-ID": "r-1"})
        logging.getLogger("portal.test").warning("token %s", token)
    finally:
        logging.config.dictConfig(django_settings.LOGGING)

    output = stream.getvalue()
    assert token not in output
    assert "WARNING django.request: Not Found: /no-such-page/ [request_id=r-1]" in output
    assert "WARNING portal.test: token mtp_[redacted]" in output


def test_ordinary_text_is_left_alone(json_log):
    message = "revoked certificate 5d3c2b1a for alice@example.com after 3 attempts; password reset requested"

    logging.getLogger("portal.test").info(message)

    assert json_log()[0]["message"] == message


# -- gunicorn ----------------------------------------------------------------------------------------------------


def gunicorn_logger() -> GunicornLogger:
    config = Config()
    for name, value in runpy.run_path(str(Path(__file__).resolve().parent.parent / "gunicorn.conf.py")).items():
        if name in config.settings:
            config.set(name, value)
    return GunicornLogger(config)


@pytest.fixture
def restore_gunicorn_logging():
    yield
    for name in ("gunicorn.error", "gunicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    logging.config.dictConfig(django_settings.LOGGING)


class FakeResponse:
    status = "200 OK"
    sent = 1234
    headers = [("X-Request-ID", "r-42")]


def test_gunicorn_access_lines_are_json_with_the_request_id_and_no_reset_key(
    settings, capsys, restore_gunicorn_logging
):
    settings.LOG_FORMAT = "json"
    log = gunicorn_logger()
    environ = {
        "REQUEST_METHOD": "GET",
        "RAW_URI": "/accounts/password/reset/key/1-abc123-0f1e2d3c4b5a/",
        "PATH_INFO": "/accounts/password/reset/key/1-abc123-0f1e2d3c4b5a/",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "203.0.113.9",
    }

    log.access(FakeResponse(), [], environ, timedelta(milliseconds=35))

    [line] = [json.loads(text) for text in capsys.readouterr().out.splitlines()]
    assert line["logger"] == "gunicorn.access"
    assert (line["method"], line["status"], line["duration_ms"], line["request_id"]) == ("GET", 200, 35, "r-42")
    assert line["path"] == "/accounts/password/reset/key/[redacted]/"
    assert "abc123-0f1e2d3c4b5a" not in json.dumps(line)


def test_gunicorn_keeps_its_plain_access_line_by_default_scrubbed(settings, capsys, restore_gunicorn_logging):
    settings.LOG_FORMAT = "plain"
    log = gunicorn_logger()
    environ = {
        "REQUEST_METHOD": "GET",
        "RAW_URI": "/accounts/confirm-email/MQ:1tAbc:xyz/",
        "SERVER_PROTOCOL": "HTTP/1.1",
    }

    log.access(FakeResponse(), [], environ, timedelta(milliseconds=5))

    output = capsys.readouterr().out
    assert '"GET /accounts/confirm-email/[redacted]/ HTTP/1.1" 200 1234' in output
    assert "MQ:1tAbc:xyz" not in output
