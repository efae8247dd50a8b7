from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from certificates import services
from certificates.models import ApiToken


def run(*args: str) -> str:
    out = StringIO()
    call_command("issue_api_token", *args, stdout=out)
    return out.getvalue()


def test_it_prints_only_a_working_token(alice):
    output = run("alice")

    secret = output.strip()
    assert output == secret + "\n"
    assert services.api_token_authenticate(secret) == alice


def test_it_creates_the_user_when_asked(db):
    secret = run("robot", "--create-user", "--email", "robot@example.com").strip()

    robot = get_user_model().objects.get(username="robot")
    assert robot.email == "robot@example.com"
    assert not robot.has_usable_password()
    assert services.api_token_authenticate(secret) == robot


def test_it_refuses_an_unknown_user_without_create_user(db):
    with pytest.raises(CommandError, match="--create-user"):
        run("nobody")


def test_it_makes_a_read_only_token_with_the_chosen_lifetime(alice):
    secret = run("alice", "--days", "7", "--read-only").strip()

    token = ApiToken.objects.get(token_sha256=ApiToken.digest(secret))
    assert token.scope == ApiToken.Scope.READ_ONLY
    assert round((token.expires_at - token.created_at).total_seconds() / 86400) == 7
    assert services.api_token_authenticate(secret, for_write=False) == alice


def test_it_makes_a_read_write_token_with_the_default_lifetime(alice, settings):
    settings.API_TOKEN_DEFAULT_DAYS = 30

    secret = run("alice").strip()

    token = ApiToken.objects.get(token_sha256=ApiToken.digest(secret))
    assert token.scope == ApiToken.Scope.READ_WRITE
    assert round((token.expires_at - token.created_at).total_seconds() / 86400) == 30


def test_it_refuses_a_lifetime_over_the_cap_and_makes_nothing(db, settings):
    settings.API_TOKEN_MAX_DAYS = 365

    with pytest.raises(CommandError, match="from 1 to 365 days"):
        run("robot", "--create-user", "--days", "366")

    assert not ApiToken.objects.exists()
    assert not get_user_model().objects.filter(username="robot").exists()


def run_command(name: str, *args: str) -> str:
    out = StringIO()
    call_command(name, *args, stdout=out)
    return out.getvalue()


def test_check_cloudflare_reports_and_fixes_the_hostname_associations(emulator, settings, db):
    from certificates.cloudflare_client import get_cloudflare_client
    from tests.firewall.test_check_cloudflare import BASE

    settings.PORTAL_API_HOSTNAMES = ["api.example.com", "api2.example.com"]
    get_cloudflare_client().create_entrypoint("0" * 32, rules=[BASE])

    with pytest.raises(CommandError, match="1 check"):
        run_command("check_cloudflare")
    fixed = run_command("check_cloudflare", "--fix")

    assert "ok mTLS enabled on api.example.com, api2.example.com" in fixed
    assert "All checks passed." in run_command("check_cloudflare")


def test_check_cloudflare_keeps_hostnames_others_associated(emulator, settings, db):
    from certificates.cloudflare_client import get_cloudflare_client

    settings.PORTAL_API_HOSTNAMES = ["api.example.com"]
    get_cloudflare_client().put_hostname_associations("0" * 32, ["admin.example.com"])

    with pytest.raises(CommandError, match="1 check"):  # the zone has no custom rules yet
        run_command("check_cloudflare", "--fix")

    assert get_cloudflare_client().get_hostname_associations("0" * 32).hostnames == (
        "admin.example.com",
        "api.example.com",
    )


def test_check_cloudflare_reports_each_check_on_its_own(emulator, settings, db):
    from certificates.cloudflare_client import get_cloudflare_client

    settings.PORTAL_API_HOSTNAMES = ["api.example.com"]
    get_cloudflare_client().put_hostname_associations("0" * 32, ["api.example.com"])
    emulator.faults.server_error(times=100, status=503, method="GET", path="rulesets")

    output = StringIO()
    with pytest.raises(CommandError, match="1 check"):
        call_command("check_cloudflare", stdout=output)
    assert "ok client certificates (Zone: SSL and Certificates Edit): readable" in output.getvalue()
    assert "FAIL custom rules (Zone: Zone WAF Edit): " in output.getvalue()


def test_poll_certificates_runs_one_pass(emulator, alice):
    from tests.support.pki import policy_csr

    certificate = services.certificate_issue(
        user=alice, csr=policy_csr(alice), validity_days=365, name="x", origin=services.Origin(actor=alice)
    )
    services.certificate_revoke(certificate=certificate, origin=services.Origin(actor=alice))
    emulator.clock.advance(31)

    output = run_command("poll_certificates")

    assert f"certificate {certificate.pk}: pending_revocation -> revoked" in output
    assert "1 in flight, 1 changed." in output
