from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.utils import timezone

from certificates import services
from certificates.models import ApiToken, Certificate, CertificateAuthority, Zone
from certificates.services import authorities
from tests.support.ca_pki import company_pki, key_lines, key_pem, pem


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


# -- portal CAs: create_ca, import_ca, portal_ca (README, "Issuers") --------------------------------------------

PORTAL_CA_ZONE = "0" * 32


@pytest.fixture
def ca_cloudflare(emulator, settings, db):
    settings.CLOUDFLARE_ACCOUNT_ID = "a" * 32
    settings.PORTAL_API_HOSTNAMES = ["api.example.com"]
    return emulator


def quiet_run(name: str, *args: str) -> tuple[str, str]:
    """Output and the error a command stopped with ("" when it passed)."""
    out = StringIO()
    try:
        call_command(name, *args, stdout=out)
    except CommandError as exc:
        return out.getvalue(), str(exc)
    return out.getvalue(), ""


def test_create_ca_makes_a_ca_and_prints_no_key(ca_cloudflare):
    output = run_command("create_ca", "--name", "API clients 2027", "--algorithm", "ec-p384", "--validity-days", "730")

    ca = CertificateAuthority.objects.get()
    assert (ca.key_algorithm, ca.status) == ("ec-p384", CertificateAuthority.Status.CREATED)
    assert f"Created portal CA {ca.pk} “API clients 2027”" in output
    assert ca.subject_key_identifier in output
    assert "PRIVATE KEY" not in output
    assert ca.encrypted_key not in output
    for line in key_lines(authorities.authority_signing_key(ca)):
        assert line not in output


def test_create_ca_make_issuer_uploads_it_and_makes_it_the_zones_issuer(ca_cloudflare):
    output = run_command("create_ca", "--name", "API clients", "--make-issuer")

    ca = CertificateAuthority.objects.get()
    assert ca.status == CertificateAuthority.Status.TRUSTED
    assert Zone.objects.get(zone_id=PORTAL_CA_ZONE).issuer == ca
    assert f"Uploaded to Cloudflare ({ca.cloudflare_id}) and associated with api.example.com." in output
    assert "now issues with the portal CA “API clients”" in output


def test_create_ca_without_the_encryption_key_refuses_in_one_line(ca_cloudflare, settings):
    settings.PORTAL_CA_ENCRYPTION_KEY = ""

    with pytest.raises(CommandError) as refused:
        run_command("create_ca", "--name", "x", "--upload")

    message = str(refused.value)
    assert "\n" not in message
    assert "PORTAL_CA_ENCRYPTION_KEY" in message
    assert "Fernet.generate_key()" in message
    assert not CertificateAuthority.objects.exists()
    assert ca_cloudflare.request_log == []


def test_import_ca_reads_the_files_and_uploads(ca_cloudflare, tmp_path):
    company = company_pki()
    (tmp_path / "chain.pem").write_text(company.chain_pem)
    (tmp_path / "key.pem").write_text(key_pem(company.intermediate_key, b"correct password"))
    (tmp_path / "password").write_text("correct password\n")

    output = run_command(
        "import_ca",
        "--name",
        "Company PKI",
        "--chain",
        str(tmp_path / "chain.pem"),
        "--key",
        str(tmp_path / "key.pem"),
        "--password-file",
        str(tmp_path / "password"),
        "--upload",
    )

    ca = CertificateAuthority.objects.get()
    assert ca.imported
    assert ca.status == CertificateAuthority.Status.TRUSTED
    assert f"delete {tmp_path / 'key.pem'}" in output
    assert "correct password" not in output
    for line in key_lines(company.intermediate_key):
        assert line not in output


def test_import_ca_refuses_a_chain_that_is_no_pem_and_an_unreadable_key_showing_neither(ca_cloudflare, tmp_path):
    company = company_pki()
    (tmp_path / "chain.pem").write_text(company.chain_pem)
    (tmp_path / "key.pem").write_text(key_pem(company.intermediate_key))
    (tmp_path / "garbled.pem").write_text(pem(company.root).replace("BEGIN CERTIFICATE", "BEGIN NOTHING"))

    _, unreadable = quiet_run(
        "import_ca", "--name", "x", "--chain", str(tmp_path / "chain.pem"), "--key", str(tmp_path / "missing.pem")
    )
    _, not_pem = quiet_run(
        "import_ca", "--name", "x", "--chain", str(tmp_path / "garbled.pem"), "--key", str(tmp_path / "key.pem")
    )

    assert unreadable == f"--key: cannot read {tmp_path / 'missing.pem'} (FileNotFoundError)."
    assert "could not be read" in not_pem
    for line in key_lines(company.intermediate_key):
        assert line not in not_pem
    assert not CertificateAuthority.objects.exists()


def test_portal_ca_uploads_switches_the_issuer_lists_and_removes(ca_cloudflare, alice):
    old = authorities.authority_create(
        name="old", algorithm="ec-p256", validity_days=365, origin=services.Origin(actor=None)
    )
    new = authorities.authority_create(
        name="new", algorithm="rsa-2048", validity_days=365, origin=services.Origin(actor=None)
    )

    run_command("portal_ca", "upload", str(old.pk))
    run_command("portal_ca", "issuer", str(old.pk))
    _, refused = quiet_run("portal_ca", "issuer", str(new.pk))
    assert "Upload it and associate the API hostnames first" in refused
    run_command("portal_ca", "upload", str(new.pk))
    switched = run_command("portal_ca", "issuer", str(new.pk))
    assert "now issues with the portal CA “new” (was the portal CA “old”)" in switched

    listing = run_command("portal_ca", "list")
    assert f"{old.pk} “old”: uploaded and associated, EC P-256" in listing
    assert f"{new.pk} “new”: uploaded and associated, RSA 2048" in listing
    assert f"issuer of zone {PORTAL_CA_ZONE}" in listing.splitlines()[1]

    _, busy = quiet_run("portal_ca", "remove", str(new.pk))
    assert "issues the certificates of zone" in busy
    removed = run_command("portal_ca", "remove", str(old.pk))
    assert f"Removed from Cloudflare: {old.pk} “old”: removed from cloudflare" in removed

    managed = run_command("portal_ca", "issuer", "managed")
    assert "now issues with Cloudflare's managed CA" in managed
    assert "at most 100 certificates" in managed


def test_portal_ca_names_an_unknown_id(ca_cloudflare):
    _, refused = quiet_run("portal_ca", "upload", "42")

    assert refused == "No portal CA has the id 42; python manage.py portal_ca list shows them."


def test_portal_ca_remove_needs_force_while_certificates_are_in_use(ca_cloudflare, alice):
    ca = authorities.authority_create(
        name="ca", algorithm="ec-p256", validity_days=365, origin=services.Origin(actor=None)
    )
    run_command("portal_ca", "upload", str(ca.pk))
    Certificate.objects.create(
        owner=alice,
        name="box",
        zone_id=PORTAL_CA_ZONE,
        authority=ca,
        status=Certificate.Status.ACTIVE,
        csr="-",
        public_key_sha256="0" * 64,
        key_type="ec",
        common_name="portal-user-1",
        validity_days=30,
        expires_on=timezone.now() + timedelta(days=30),
    )

    _, refused = quiet_run("portal_ca", "remove", str(ca.pk))
    assert "1 certificate the portal CA “ca” signed is still active" in refused
    run_command("portal_ca", "remove", str(ca.pk), "--force")
    ca.refresh_from_db()
    assert ca.status == CertificateAuthority.Status.REMOVED


# -- check_cloudflare and portal CAs ----------------------------------------------------------------------------


def ca_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if "CA" in line or "plan" in line or "CLOUDFLARE_ACCOUNT_ID" in line]


@pytest.fixture
def trusted(ca_cloudflare, settings):
    settings.CLOUDFLARE_PLAN = "enterprise"
    ca = authorities.authority_create(
        name="API clients", algorithm="ec-p256", validity_days=365, origin=services.Origin(actor=None)
    )
    authorities.authority_upload(authority=ca, origin=services.Origin(actor=None))
    authorities.zone_set_issuer(zone_id=PORTAL_CA_ZONE, authority=ca, origin=services.Origin(actor=None))
    ca.refresh_from_db()
    return ca


def test_check_cloudflare_confirms_an_uploaded_and_associated_ca(trusted):
    output, _ = quiet_run("check_cloudflare")

    assert ca_lines(output) == [
        f"ok new certificates are signed by portal CA {trusted.pk} “API clients”",
        "ok the plan allows portal CAs (bring your own CA needs Enterprise; CLOUDFLARE_PLAN=enterprise)",
        f"ok portal CA {trusted.pk} “API clients” is uploaded ({trusted.cloudflare_id}) and associated with every "
        "API hostname",
    ]


def test_check_cloudflare_finds_missing_associations_and_fix_restores_them(trusted, settings):
    from certificates.cloudflare_client import get_cloudflare_client

    settings.PORTAL_API_HOSTNAMES = ["api.example.com", "api2.example.com"]

    output, failed = quiet_run("check_cloudflare")
    assert failed
    assert (
        f"FAIL portal CA {trusted.pk} “API clients” is not associated with api2.example.com: what it signed is not "
        f"verified there; run with --fix, or python manage.py portal_ca upload {trusted.pk}"
    ) in output

    fixed, _ = quiet_run("check_cloudflare", "--fix")
    assert f"ok portal CA {trusted.pk} “API clients” uploaded and associated with every API hostname again" in fixed
    associated = get_cloudflare_client().get_hostname_associations(
        PORTAL_CA_ZONE, mtls_certificate_id=trusted.cloudflare_id
    )
    assert associated.hostnames == ("api.example.com", "api2.example.com")


def test_check_cloudflare_finds_an_upload_gone_from_the_account(trusted):
    from certificates.cloudflare_client import get_cloudflare_client

    client = get_cloudflare_client()
    client.put_hostname_associations(PORTAL_CA_ZONE, [], mtls_certificate_id=trusted.cloudflare_id)
    client.delete_mtls_certificate("a" * 32, trusted.cloudflare_id)

    output, failed = quiet_run("check_cloudflare")

    assert failed
    assert (
        f"FAIL portal CA {trusted.pk} “API clients” is not uploaded to the account (or not as a CA): what it signed "
        f"fails at the edge; run with --fix, or python manage.py portal_ca upload {trusted.pk}"
    ) in output


def test_check_cloudflare_names_the_plan_the_account_id_and_a_ca_not_uploaded(trusted, settings):
    settings.CLOUDFLARE_PLAN = "business"
    settings.CLOUDFLARE_ACCOUNT_ID = ""
    waiting = authorities.authority_create(
        name="next", algorithm="ec-p256", validity_days=365, origin=services.Origin(actor=None)
    )

    output, failed = quiet_run("check_cloudflare")

    assert failed
    lines = ca_lines(output)
    not_uploaded = f"warn portal CA {waiting.pk} “next” is not uploaded to Cloudflare yet: python manage.py portal_ca"
    assert f"{not_uploaded} upload {waiting.pk}" in lines
    assert any(
        line.startswith("warn portal CAs need bring your own CA") and "CLOUDFLARE_PLAN is business" in line
        for line in lines
    )
    assert any(line.startswith("FAIL CLOUDFLARE_ACCOUNT_ID is not set") for line in lines)


def test_check_cloudflare_fails_the_plan_against_cloudflare(settings):
    from certificates.management.commands.check_cloudflare import Command

    settings.CLOUDFLARE_EMULATED = False
    settings.CLOUDFLARE_PLAN = "pro"
    command = Command(stdout=StringIO())
    command.failures = 0

    command._check_plan()

    assert command.failures == 1
    assert "set CLOUDFLARE_PLAN=enterprise" in command.stdout.getvalue()
    assert "python manage.py portal_ca issuer managed" in command.stdout.getvalue()


def test_check_cloudflare_fails_an_issuer_cloudflare_does_not_trust(trusted):
    CertificateAuthority.objects.filter(pk=trusted.pk).update(status=CertificateAuthority.Status.CREATED)

    output, failed = quiet_run("check_cloudflare")

    assert failed
    assert f"FAIL the zone's issuer, portal CA {trusted.pk} “API clients”, is created, not uploaded" in output
