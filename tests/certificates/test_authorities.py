"""Portal CAs: made or imported, uploaded with `ca: true` and associated with the API hostnames, made the zone's
issuer, rotated (owners told to renew, the old CA removed once its last certificate is gone) and removed in the
seed document's order. Against the in-process emulator, every exchange checked against Cloudflare's schema."""

from __future__ import annotations

import datetime
import logging
import secrets
from dataclasses import dataclass

import pytest
from cryptography import x509
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives.asymmetric import ec
from django.core import mail
from django.test import Client
from django.utils import timezone

from certificates.authority import pki
from certificates.cloudflare_client import get_cloudflare_client, get_emulator_session
from certificates.models import AuditEvent, Certificate, CertificateAuthority, FirewallState, Zone
from certificates.services import (
    CloudflareUnavailableError,
    InvalidTransitionError,
    Origin,
    PolicyError,
    QuotaError,
    authorities,
)
from certificates.services.errors import AuthorityUnavailableError
from certificates.tasks import retire_authorities
from cloudflare import errors as cf_errors
from tests.conftest import make_user
from tests.support.accounts import signed_in
from tests.support.ca_pki import company_pki, key_lines, key_pem, pem, signed
from tests.support.contract import ContractValidator, Exchange

ZONE = "0" * 32
ACCOUNT = "a" * 32
HOSTS = ["api.example.com", "api2.example.com"]
CONSOLE = Origin(actor=None)


@dataclass(frozen=True)
class Sent:
    method: str
    path: str
    body: bytes


@pytest.fixture
def cloudflare(emulator, settings, db):
    """The emulator with every exchange checked against Cloudflare's schema; returns the requests, in order."""
    settings.CLOUDFLARE_ACCOUNT_ID = ACCOUNT
    settings.PORTAL_API_HOSTNAMES = HOSTS
    contract = ContractValidator()
    sent: list[Sent] = []

    def check(response, *args, **kwargs):
        request = response.request
        body = request.body.encode() if isinstance(request.body, str) else (request.body or b"")
        sent.append(Sent(request.method, request.path_url.split("/client/v4", 1)[1].split("?")[0], body))
        if response.status_code < 500:
            contract.check(Exchange(request.method, request.url, body or None, response.status_code, response.content))

    get_emulator_session(emulator).hooks["response"].append(check)
    return sent


@pytest.fixture
def company():
    return company_pki()


def make_ca(name: str = "Portal CA", *, validity_days: int = 3650) -> CertificateAuthority:
    return authorities.authority_create(name=name, algorithm="ec-p256", validity_days=validity_days, origin=CONSOLE)


def trusted_ca(name: str = "Portal CA", **kwargs) -> CertificateAuthority:
    return authorities.authority_upload(authority=make_ca(name, **kwargs), origin=CONSOLE)


def uploads() -> list:
    return get_cloudflare_client().list_mtls_certificates(ACCOUNT)


def associated(ca: CertificateAuthority) -> tuple[str, ...]:
    return get_cloudflare_client().get_hostname_associations(ZONE, mtls_certificate_id=ca.cloudflare_id).hostnames


def certificate_of(owner, ca: CertificateAuthority | None, *, name: str = "box", days: int = 90, **fields):
    """A row as the lead's issuance writes it for a portal CA (the signing itself is not under test here)."""
    now = timezone.now()
    values = {
        "owner": owner,
        "name": name,
        "zone_id": ZONE,
        "authority": ca,
        "status": Certificate.Status.ACTIVE,
        "csr": "-",
        "public_key_sha256": "0" * 64,
        "key_type": "ec",
        "common_name": f"portal-user-{owner.pk}",
        "validity_days": days,
        "issued_on": now,
        "expires_on": now + datetime.timedelta(days=days),
        "serial_number": secrets.token_hex(18).upper(),  # a CA never repeats a serial (a database constraint)
        **fields,
    }
    return Certificate.objects.create(**values)


# -- create and import ----------------------------------------------------------------------------------------


def test_it_creates_a_ca_whose_key_is_stored_only_encrypted(db):
    ca = make_ca("Example API clients 2027")

    assert ca.status == CertificateAuthority.Status.CREATED
    assert not ca.imported
    assert ca.key_algorithm == "ec-p256"
    certificate = x509.load_pem_x509_certificate(ca.certificate_pem.encode())
    assert certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert "PRIVATE KEY" not in ca.encrypted_key
    key = authorities.authority_signing_key(ca)
    assert key.public_key().public_numbers() == certificate.public_key().public_numbers()
    event = AuditEvent.objects.get(action=AuditEvent.Action.CA_CREATED)
    assert event.detail["authority_id"] == ca.pk
    assert "PRIVATE KEY" not in str(event.detail)


def test_it_refuses_an_unknown_algorithm_or_validity_and_stores_nothing(db):
    with pytest.raises(PolicyError, match="Unknown key algorithm"):
        authorities.authority_create(name="x", algorithm="dsa", validity_days=365, origin=CONSOLE)
    with pytest.raises(PolicyError, match="30 to"):
        authorities.authority_create(name="x", algorithm="ec-p384", validity_days=1, origin=CONSOLE)

    assert not CertificateAuthority.objects.exists()


def test_without_the_encryption_key_it_refuses_by_naming_the_setting(db, settings):
    settings.PORTAL_CA_ENCRYPTION_KEY = ""

    with pytest.raises(AuthorityUnavailableError, match="PORTAL_CA_ENCRYPTION_KEY") as refused:
        make_ca()

    assert "Fernet.generate_key()" in refused.value.message
    assert not CertificateAuthority.objects.exists()


def test_a_key_stored_with_another_encryption_key_is_refused_not_guessed(db, settings):
    ca = make_ca()
    settings.PORTAL_CA_ENCRYPTION_KEY = "A" * 43 + "="

    with pytest.raises(AuthorityUnavailableError, match="encrypted with another key"):
        authorities.authority_signing_key(ca)


def test_it_imports_an_intermediate_with_its_chain(db, company):
    root, intermediate, intermediate_key = company.root, company.intermediate, company.intermediate_key

    ca = authorities.authority_import(
        name="Company PKI", chain_pem=pem(intermediate, root), key_pem=key_pem(intermediate_key), origin=CONSOLE
    )

    assert ca.imported
    assert ca.status == CertificateAuthority.Status.CREATED
    assert ca.certificate_pem == pem(intermediate)
    assert ca.chain_pem == pem(root)
    assert ca.subject_key_identifier == pki.subject_key_identifier(intermediate)
    assert AuditEvent.objects.filter(action=AuditEvent.Action.CA_IMPORTED).count() == 1


def test_it_imports_a_key_encrypted_with_a_password_and_refuses_a_wrong_one(db, company):
    root, intermediate, intermediate_key = company.root, company.intermediate, company.intermediate_key
    encrypted = key_pem(intermediate_key, b"s3cret pass")

    with pytest.raises(PolicyError, match="its password"):
        authorities.authority_import(
            name="x", chain_pem=pem(intermediate, root), key_pem=encrypted, password="wrong", origin=CONSOLE
        )
    ca = authorities.authority_import(
        name="x", chain_pem=pem(intermediate, root), key_pem=encrypted, password="s3cret pass", origin=CONSOLE
    )

    assert authorities.authority_signing_key(ca).public_key().public_numbers() == (
        intermediate_key.public_key().public_numbers()
    )


@pytest.mark.parametrize(
    ("case", "refusal"),
    [
        ("leaf", "not a CA"),
        ("other key", "does not belong"),
        ("expired", "not valid now"),
        ("chain out of order", "not signed by the next certificate"),
    ],
)
def test_it_refuses_an_import_that_cannot_serve_and_stores_nothing(db, company, case, refusal):
    root, intermediate, intermediate_key = company.root, company.intermediate, company.intermediate_key
    chain, key = pem(intermediate, root), key_pem(intermediate_key)
    if case == "leaf":
        leaf_key = ec.generate_private_key(ec.SECP256R1())
        chain = pem(signed("a client", key=leaf_key, issuer=intermediate, issuer_key=intermediate_key, ca=False))
        key = key_pem(leaf_key)
    elif case == "other key":
        key = key_pem(ec.generate_private_key(ec.SECP256R1()))
    elif case == "expired":
        old = signed("Old clients", key=intermediate_key, issuer=root, issuer_key=company.root_key, days=(-400, -35))
        chain = pem(old, root)
    else:
        chain = pem(intermediate, signed("Another root", key=ec.generate_private_key(ec.SECP256R1())))

    with pytest.raises(PolicyError, match=refusal) as refused:
        authorities.authority_import(name="x", chain_pem=chain, key_pem=key, origin=CONSOLE)

    assert "PRIVATE KEY" not in refused.value.message
    assert not CertificateAuthority.objects.exists()


# -- upload and hostname associations --------------------------------------------------------------------------


def test_it_uploads_the_ca_and_associates_every_api_hostname(cloudflare):
    ca = trusted_ca()

    assert ca.status == CertificateAuthority.Status.TRUSTED
    (upload,) = uploads()
    assert upload.id == ca.cloudflare_id
    assert upload.ca
    assert upload.certificates.strip() == ca.certificate_pem.strip()
    assert associated(ca) == tuple(HOSTS)
    posted = [s for s in cloudflare if s.method == "POST"]
    assert len(posted) == 1
    assert b'"ca": true' in posted[0].body
    assert b"PRIVATE KEY" not in posted[0].body
    event = AuditEvent.objects.get(action=AuditEvent.Action.CA_UPLOADED)
    assert event.detail["hostnames"] == HOSTS
    assert FirewallState.objects.get(zone_id=ZONE).sync_requested_at is not None


def test_uploading_a_trusted_ca_again_only_restores_its_associations(cloudflare):
    ca = trusted_ca()
    get_cloudflare_client().put_hostname_associations(ZONE, [], mtls_certificate_id=ca.cloudflare_id)

    authorities.authority_upload(authority=ca, origin=CONSOLE)

    assert associated(ca) == tuple(HOSTS)
    assert len(uploads()) == 1
    assert AuditEvent.objects.filter(action=AuditEvent.Action.CA_UPLOADED).count() == 1


def test_it_refuses_to_upload_an_expired_ca_and_calls_nobody(cloudflare):
    ca = make_ca()
    CertificateAuthority.objects.filter(pk=ca.pk).update(not_after=timezone.now() - datetime.timedelta(days=1))

    with pytest.raises(PolicyError, match="expired"):
        authorities.authority_upload(authority=ca, origin=CONSOLE)

    assert cloudflare == []


def test_without_an_account_id_the_upload_is_refused_by_naming_the_setting(cloudflare, settings):
    settings.CLOUDFLARE_ACCOUNT_ID = ""

    with pytest.raises(PolicyError, match="CLOUDFLARE_ACCOUNT_ID"):
        authorities.authority_upload(authority=make_ca(), origin=CONSOLE)


def test_the_sixth_ca_meets_the_account_limit_with_a_clear_refusal(cloudflare):
    for number in range(5):
        trusted_ca(f"CA {number}")
    sixth = make_ca("CA 5")

    with pytest.raises(QuotaError, match="1489") as refused:
        authorities.authority_upload(authority=sixth, origin=CONSOLE)

    assert "limit of uploaded CAs" in refused.value.message
    assert "remove" in refused.value.message.lower()
    sixth.refresh_from_db()
    assert sixth.status == CertificateAuthority.Status.CREATED
    assert sixth.cloudflare_id == ""
    assert len(uploads()) == 5


def test_the_client_raises_a_typed_error_for_1489(cloudflare):
    client = get_cloudflare_client()
    for number in range(5):
        client.upload_mtls_certificate(ACCOUNT, certificates=make_ca(f"CA {number}").certificate_pem)

    with pytest.raises(cf_errors.CAQuotaExceededError):
        client.upload_mtls_certificate(ACCOUNT, certificates=make_ca("one too many").certificate_pem)


def test_an_upload_whose_answer_was_lost_is_found_by_listing_not_repeated(cloudflare, emulator, settings):
    settings.CLOUDFLARE_TIMEOUT = 0.05
    emulator.faults.latency(seconds=1, method="POST", path="mtls_certificates")  # done, then the answer is lost

    ca = authorities.authority_upload(authority=make_ca(), origin=CONSOLE)

    assert ca.status == CertificateAuthority.Status.TRUSTED
    assert [upload.id for upload in uploads()] == [ca.cloudflare_id]
    # Listed before the upload, uploaded once (its answer lost), listed again: found (and listed by the test).
    served = [entry.method for entry in emulator.request_log if entry.path.endswith("/mtls_certificates")]
    assert served == ["GET", "POST", "GET", "GET"]


def test_an_upload_that_landed_before_a_crash_is_adopted_on_the_next_try(cloudflare):
    ca = make_ca()
    earlier = get_cloudflare_client().upload_mtls_certificate(ACCOUNT, certificates=ca.certificate_pem)

    ca = authorities.authority_upload(authority=ca, origin=CONSOLE)

    assert ca.cloudflare_id == earlier.id
    assert len(uploads()) == 1


def test_a_failed_upload_not_listed_records_nothing_and_the_next_try_uploads_once(cloudflare, emulator):
    ca = make_ca()
    emulator.faults.server_error(times=1, status=502, method="POST", path="mtls_certificates")

    with pytest.raises(CloudflareUnavailableError, match="looks for an earlier upload"):
        authorities.authority_upload(authority=ca, origin=CONSOLE)
    ca.refresh_from_db()
    assert ca.status == CertificateAuthority.Status.CREATED
    assert ca.cloudflare_id == ""

    authorities.authority_upload(authority=ca, origin=CONSOLE)
    assert len(uploads()) == 1


def test_one_change_of_a_ca_at_a_time(cloudflare):
    from django.core.cache import cache

    ca = trusted_ca()
    cloudflare.clear()
    cache.add(f"authority-change:{ca.pk}", "another process", timeout=60)  # say, an upload under way

    for change in (
        lambda: authorities.authority_upload(authority=ca, origin=CONSOLE),
        lambda: authorities.authority_remove(authority=ca, origin=CONSOLE),
        lambda: authorities.zone_set_issuer(zone_id=ZONE, authority=ca, origin=CONSOLE),
    ):
        with pytest.raises(InvalidTransitionError, match="right now"):
            change()

    assert cloudflare == []
    assert not Zone.objects.filter(issuer=ca).exists()
    assert cache.get(f"authority-change:{ca.pk}") == "another process"  # the holder's lock is left alone
    cache.delete(f"authority-change:{ca.pk}")
    assert authorities.authority_remove(authority=ca, origin=CONSOLE).status == CertificateAuthority.Status.REMOVED


def test_a_removed_ca_is_never_uploaded_again(cloudflare):
    ca = authorities.authority_remove(authority=trusted_ca(), origin=CONSOLE)

    with pytest.raises(InvalidTransitionError, match="stays removed"):
        authorities.authority_upload(authority=ca, origin=CONSOLE)
    assert uploads() == []


# -- removal ----------------------------------------------------------------------------------------------------


def test_removal_drops_the_associations_before_deleting_the_upload(cloudflare):
    ca = trusted_ca()
    cloudflare.clear()

    removed = authorities.authority_remove(authority=ca, origin=CONSOLE)

    assert removed.status == CertificateAuthority.Status.REMOVED
    writes = [(s.method, s.path) for s in cloudflare if s.method != "GET"]
    assert writes == [
        ("PUT", f"/zones/{ZONE}/certificate_authorities/hostname_associations"),
        ("DELETE", f"/accounts/{ACCOUNT}/mtls_certificates/{ca.cloudflare_id}"),
    ]
    put = next(s for s in cloudflare if s.method == "PUT")
    assert b'"hostnames": []' in put.body
    assert ca.cloudflare_id.encode() in put.body
    assert uploads() == []
    assert AuditEvent.objects.get(action=AuditEvent.Action.CA_REMOVED).detail["forced"] is False


def test_cloudflare_refuses_to_delete_a_ca_still_associated(cloudflare):
    ca = trusted_ca()

    with pytest.raises(cf_errors.BadRequestError, match="hostname associations"):
        get_cloudflare_client().delete_mtls_certificate(ACCOUNT, ca.cloudflare_id)


def test_an_interrupted_removal_is_finished_by_asking_again(cloudflare, emulator):
    ca = trusted_ca()
    emulator.faults.server_error(times=10, status=503, method="DELETE")

    with pytest.raises(CloudflareUnavailableError, match="carries on"):
        authorities.authority_remove(authority=ca, origin=CONSOLE)
    ca.refresh_from_db()
    assert ca.status == CertificateAuthority.Status.TRUSTED
    assert associated(ca) == ()  # the first step is done and kept

    emulator.faults.clear()
    assert authorities.authority_remove(authority=ca, origin=CONSOLE).status == CertificateAuthority.Status.REMOVED
    assert uploads() == []


def test_removal_is_refused_while_the_ca_is_the_zones_issuer(cloudflare):
    ca = trusted_ca()
    authorities.zone_set_issuer(zone_id=ZONE, authority=ca, origin=CONSOLE)
    cloudflare.clear()

    with pytest.raises(InvalidTransitionError, match="make another CA"):
        authorities.authority_remove(authority=ca, origin=CONSOLE, force=True)

    assert cloudflare == []


def test_removal_waits_for_certificates_in_use_unless_forced(cloudflare, alice):
    ca = trusted_ca()
    certificate_of(alice, ca)
    certificate_of(alice, ca, name="old", status=Certificate.Status.REVOKED)
    certificate_of(alice, ca, name="gone", expires_on=timezone.now() - datetime.timedelta(days=1))

    with pytest.raises(InvalidTransitionError, match=r"1 certificate .* is still active"):
        authorities.authority_remove(authority=ca, origin=CONSOLE)
    assert len(uploads()) == 1

    authorities.authority_remove(authority=ca, origin=CONSOLE, force=True)
    assert uploads() == []
    event = AuditEvent.objects.get(action=AuditEvent.Action.CA_REMOVED)
    assert event.detail["forced"] is True
    assert event.detail["in_use"] == 1


def test_an_upload_never_recorded_is_found_and_removed_with_the_ca(cloudflare):
    ca = make_ca()
    get_cloudflare_client().upload_mtls_certificate(ACCOUNT, certificates=ca.certificate_pem)

    authorities.authority_remove(authority=ca, origin=CONSOLE)

    assert uploads() == []


# -- the zone's issuer ------------------------------------------------------------------------------------------


def test_only_a_trusted_ca_can_become_the_issuer(cloudflare):
    with pytest.raises(InvalidTransitionError, match="Upload it"):
        authorities.zone_set_issuer(zone_id=ZONE, authority=make_ca(), origin=CONSOLE)

    assert not Zone.objects.filter(issuer__isnull=False).exists()


def test_switching_the_issuer_is_audited_and_leaves_certificates_their_issuer(cloudflare, alice):
    managed = certificate_of(alice, None, name="managed")
    ca = trusted_ca()

    change = authorities.zone_set_issuer(zone_id=ZONE, authority=ca, origin=CONSOLE)

    assert change.changed
    assert Zone.objects.get(zone_id=ZONE).issuer == ca
    assert Zone.objects.get(zone_id=ZONE).serial_marker
    event = AuditEvent.objects.get(action=AuditEvent.Action.ZONE_ISSUER_CHANGED)
    assert (event.old_status, event.new_status) == ("managed CA", f"portal CA {ca.pk}")
    assert event.detail == {"zone_id": ZONE, "old_authority_id": None, "new_authority_id": ca.pk}
    managed.refresh_from_db()
    assert managed.authority is None

    back = authorities.zone_set_issuer(zone_id=ZONE, authority=None, origin=CONSOLE)
    assert Zone.objects.get(zone_id=ZONE).issuer is None
    assert "at most 100 certificates" in back.notes[0]
    assert "1 of them" in back.notes[0]
    assert not authorities.zone_set_issuer(zone_id=ZONE, authority=None, origin=CONSOLE).changed


def test_a_ca_ending_before_the_longest_validity_becomes_issuer_with_a_warning(cloudflare, settings):
    settings.CERTIFICATE_VALIDITY_CHOICES = [30, 365]
    ca = trusted_ca(validity_days=100)

    change = authorities.zone_set_issuer(zone_id=ZONE, authority=ca, origin=CONSOLE)

    assert change.changed
    assert "sooner than the 365 days" in change.notes[0]


def test_an_expired_ca_cannot_become_the_issuer(cloudflare):
    ca = trusted_ca()
    CertificateAuthority.objects.filter(pk=ca.pk).update(not_after=timezone.now() - datetime.timedelta(minutes=1))

    with pytest.raises(PolicyError, match="expired"):
        authorities.zone_set_issuer(zone_id=ZONE, authority=ca, origin=CONSOLE)


# -- rotation ---------------------------------------------------------------------------------------------------


def test_rotation_end_to_end(cloudflare, alice, bob, django_capture_on_commit_callbacks):
    old, new = trusted_ca("CA 2026"), trusted_ca("CA 2027")
    authorities.zone_set_issuer(zone_id=ZONE, authority=old, origin=CONSOLE)
    alice_first, alice_second = certificate_of(alice, old, name="laptop"), certificate_of(alice, old, name="ci")
    bob_only = certificate_of(bob, old, name="server", days=30)
    certificate_of(bob, old, name="revoked", status=Certificate.Status.REVOKED)
    untouched = make_ca("never an issuer")

    # Both are trusted during the overlap; making the new one the issuer tells the old one's owners to renew.
    with django_capture_on_commit_callbacks(execute=True):
        authorities.zone_set_issuer(zone_id=ZONE, authority=new, origin=CONSOLE)

    assert {upload.id for upload in uploads()} == {old.cloudflare_id, new.cloudflare_id}
    by_address = {message.to[0]: message for message in mail.outbox}
    assert sorted(by_address) == ["alice@example.com", "bob@example.com"]
    assert "laptop" in by_address["alice@example.com"].body
    assert "ci" in by_address["alice@example.com"].body
    assert "server" in by_address["bob@example.com"].body
    assert "revoked" not in by_address["bob@example.com"].body
    assert "Renew 2 client certificates" in by_address["alice@example.com"].subject

    # Sent once: neither the hourly task nor another switch sends them again.
    assert retire_authorities.delay().get()["notices"] == 0
    assert len(mail.outbox) == 2
    assert old.pk not in retire_authorities.delay().get()["removed"]  # its certificates are still in use
    assert len(uploads()) == 2

    # Owners renew: the old certificates are revoked or expire; the task then removes the old CA.
    Certificate.objects.filter(pk__in=[alice_first.pk, alice_second.pk]).update(status=Certificate.Status.REVOKED)
    Certificate.objects.filter(pk=bob_only.pk).update(expires_on=timezone.now() - datetime.timedelta(seconds=1))
    result = retire_authorities.delay().get()

    assert result["removed"] == [old.pk]
    old.refresh_from_db()
    assert old.status == CertificateAuthority.Status.REMOVED
    assert [upload.id for upload in uploads()] == [new.cloudflare_id]
    new.refresh_from_db()
    untouched.refresh_from_db()
    assert new.status == CertificateAuthority.Status.TRUSTED
    assert untouched.status == CertificateAuthority.Status.CREATED


def test_a_trusted_ca_that_never_issued_is_not_retired(cloudflare):
    waiting = trusted_ca("uploaded, not yet the issuer")

    assert authorities.authorities_retire() == []
    waiting.refresh_from_db()
    assert waiting.status == CertificateAuthority.Status.TRUSTED


def test_a_notice_that_could_not_be_sent_is_sent_by_the_next_run(cloudflare, alice, monkeypatch):
    old, new = trusted_ca("old"), trusted_ca("new")
    authorities.zone_set_issuer(zone_id=ZONE, authority=old, origin=CONSOLE)
    certificate_of(alice, old)
    authorities.zone_set_issuer(zone_id=ZONE, authority=new, origin=CONSOLE)

    def broken(*args, **kwargs):
        raise OSError("mail server down")

    monkeypatch.setattr(authorities, "send_mail", broken)
    assert authorities.rotation_notices_send() == 0
    monkeypatch.undo()

    assert authorities.rotation_notices_send() == 1
    assert authorities.rotation_notices_send() == 0
    assert len(mail.outbox) == 1


def test_the_log_warns_before_a_ca_expires(cloudflare, alice, caplog):
    ca = trusted_ca("ending soon", validity_days=40)
    authorities.zone_set_issuer(zone_id=ZONE, authority=ca, origin=CONSOLE)
    certificate_of(alice, ca)
    later = timezone.now() + datetime.timedelta(days=15)

    with caplog.at_level(logging.WARNING, logger="certificates.services.authorities"):
        warnings = authorities.authorities_expiry_warnings(now=later)

    assert len(warnings) == 1
    assert f"the issuer of zone {ZONE}" in caplog.text
    assert "1 certificate(s) in use" in caplog.text
    assert authorities.authorities_expiry_warnings() == []  # 40 days left today: no warning yet


# -- check --deploy ---------------------------------------------------------------------------------------------


def test_check_deploy_warns_when_a_ca_exists_without_the_encryption_key(db, settings):
    from portal.checks import check_ca_encryption_key

    settings.PORTAL_CA_ENCRYPTION_KEY = ""
    assert check_ca_encryption_key(None) == []  # no CA: nothing needs the key

    settings.PORTAL_CA_ENCRYPTION_KEY = Fernet.generate_key().decode()
    make_ca()
    settings.PORTAL_CA_ENCRYPTION_KEY = ""

    (warning,) = check_ca_encryption_key(None)
    assert warning.id == "portal.W002"
    assert "PORTAL_CA_ENCRYPTION_KEY" in warning.msg
    assert "PORTAL_CA_ENCRYPTION_KEY_FILE" in warning.hint


# -- the admin ------------------------------------------------------------------------------------------------

CHANGELIST = "/admin/certificates/certificateauthority/"


def admin_url(action: str, ca: CertificateAuthority | None = None) -> str:
    return f"{CHANGELIST}{ca.pk}/{action}/" if ca else f"{CHANGELIST}{action}/"


@pytest.fixture
def staff(charlie, cloudflare):
    return signed_in(charlie)


def test_the_admin_creates_a_ca_and_never_shows_its_key(staff):
    form = staff.get(admin_url("add"))
    assert form.status_code == 200
    assert b"EC P-384" in form.content

    created = staff.post(
        admin_url("add"), {"name": "API clients 2027", "algorithm": "ec-p384", "validity_days": "1825"}, follow=True
    )

    ca = CertificateAuthority.objects.get()
    assert ca.key_algorithm == "ec-p384"
    assert created.redirect_chain[-1][0] == f"{CHANGELIST}{ca.pk}/change/"
    assert b"is stored encrypted" in created.content
    history = staff.get(f"{CHANGELIST}{ca.pk}/history/")
    for page in (created, history, staff.get(CHANGELIST)):
        assert page.status_code == 200
        assert ca.encrypted_key.encode() not in page.content
        for line in key_lines(authorities.authority_signing_key(ca)):
            assert line.encode() not in page.content


def test_the_admin_imports_a_ca_and_a_refused_key_is_not_sent_back(staff, company):
    root, intermediate, intermediate_key = company.root, company.intermediate, company.intermediate_key
    chain, wrong_key = pem(intermediate, root), ec.generate_private_key(ec.SECP256R1())

    refused = staff.post(admin_url("import"), {"name": "Company", "chain_pem": chain, "key_pem": key_pem(wrong_key)})
    unreadable = staff.post(
        admin_url("import"),
        {"name": "Company", "chain_pem": chain, "key_pem": key_pem(intermediate_key), "password": "pw-0f-the-key"},
    )

    assert b"does not belong to the first certificate" in refused.content
    assert b"its password if it is encrypted" in unreadable.content
    assert not CertificateAuthority.objects.exists()
    for line in key_lines(wrong_key):
        assert line.encode() not in refused.content
    for line in key_lines(intermediate_key):
        assert line.encode() not in unreadable.content
    assert b"pw-0f-the-key" not in unreadable.content

    imported = staff.post(
        admin_url("import"),
        {"name": "Company", "chain_pem": pem(intermediate, root), "key_pem": key_pem(intermediate_key)},
        follow=True,
    )
    ca = CertificateAuthority.objects.get()
    assert ca.imported
    for line in key_lines(intermediate_key):
        assert line.encode() not in imported.content


def test_the_admin_uploads_makes_issuer_and_switches_back(staff):
    ca = make_ca()

    confirm = staff.get(admin_url("upload", ca))
    assert b"Upload and associate" in confirm.content
    assert CertificateAuthority.objects.get().status == CertificateAuthority.Status.CREATED  # a GET changes nothing

    uploaded = staff.post(admin_url("upload", ca), follow=True)
    ca.refresh_from_db()
    assert ca.status == CertificateAuthority.Status.TRUSTED
    assert b"is uploaded and associated with api.example.com, api2.example.com" in uploaded.content
    assert b"Make issuer of the zone" in uploaded.content

    made = staff.post(admin_url("issuer", ca), follow=True)
    assert Zone.objects.get(zone_id=ZONE).issuer == ca
    assert b"now issues with the portal CA" in made.content
    assert f'<td class="field-issuer_of">{ZONE}</td>'.encode() in staff.get(CHANGELIST).content

    staff.post(admin_url("managed"), follow=True)
    assert Zone.objects.get(zone_id=ZONE).issuer is None


def test_the_admin_shows_a_refusal_as_a_message(staff):
    ca = make_ca()

    answer = staff.post(admin_url("issuer", ca), follow=True)

    assert b"Upload it and associate the API hostnames first" in answer.content
    assert not Zone.objects.filter(issuer__isnull=False).exists()


def test_the_admin_removes_after_asking_and_only_forced_while_certificates_are_in_use(staff, alice):
    ca = trusted_ca()
    certificate_of(alice, ca)

    confirm = staff.get(admin_url("remove", ca))
    assert b"1 certificate it signed is still in use" in confirm.content
    assert b'name="force"' in confirm.content

    staff.post(admin_url("remove", ca), follow=True)
    ca.refresh_from_db()
    assert ca.status == CertificateAuthority.Status.TRUSTED

    staff.post(admin_url("remove", ca), {"force": "on"}, follow=True)
    ca.refresh_from_db()
    assert ca.status == CertificateAuthority.Status.REMOVED
    assert uploads() == []


def test_the_upload_action_of_the_list(staff):
    first, second = make_ca("one"), make_ca("two")

    answer = staff.post(
        CHANGELIST, {"action": "upload_selected", "_selected_action": [first.pk, second.pk]}, follow=True
    )

    assert b"2 portal CAs uploaded" in answer.content
    assert set(CertificateAuthority.objects.values_list("status", flat=True)) == {"trusted"}


def test_the_admins_actions_need_csrf(staff):
    ca = make_ca()
    client = Client(enforce_csrf_checks=True)
    client.cookies = staff.cookies  # the staff member's session, from a page that sends no CSRF token

    refused = client.post(admin_url("upload", ca))

    assert refused.status_code == 403
    assert b"CSRF" in refused.content
    ca.refresh_from_db()
    assert ca.status == CertificateAuthority.Status.CREATED


def test_staff_who_may_only_view_cannot_change_a_ca(cloudflare):
    from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
    from django.contrib.auth.models import Permission

    viewer = make_user("viewer")
    viewer.is_staff = True
    viewer.save()
    viewer.user_permissions.add(Permission.objects.get(codename="view_certificateauthority"))
    TOTP.activate(viewer, generate_totp_secret())
    client = signed_in(viewer)
    ca = make_ca()

    assert client.get(CHANGELIST).status_code == 200
    assert client.post(admin_url("upload", ca)).status_code == 403
    assert client.post(admin_url("managed")).status_code == 403
    assert client.get(admin_url("add")).status_code == 403
    ca.refresh_from_db()
    assert ca.status == CertificateAuthority.Status.CREATED


def test_users_cannot_reach_the_ca_admin(alice, cloudflare):
    ca = make_ca()
    client = signed_in(alice)

    for url in (CHANGELIST, admin_url("add"), admin_url("import")):
        assert client.get(url).status_code == 302
    assert client.post(admin_url("upload", ca)).status_code == 302
    ca.refresh_from_db()
    assert ca.status == CertificateAuthority.Status.CREATED
