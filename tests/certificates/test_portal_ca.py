"""Issuance, revocation and the CRL of a portal CA (issue #11, points 3 and 4), with the portal's own services."""

from __future__ import annotations

from datetime import UTC, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import CRLEntryExtensionOID, ExtendedKeyUsageOID, ExtensionOID, NameOID
from django.test import Client
from django.urls import reverse

from certificates import services
from certificates.authority import keystore
from certificates.models import AuditEvent, Certificate, CertificateAuthority, FirewallState, OwnerSerialTag, Zone
from certificates.services.errors import AuthorityUnavailableError, InvalidTransitionError, PolicyError, QuotaError
from tests.support.api import issue_via_api
from tests.support.pki import make_key, policy_csr
from tests.support.portal_ca import ZONE, trusted_portal_ca

pytestmark = pytest.mark.django_db


def issue(user, *, name="laptop", validity_days=365, csr=None):
    return services.certificate_issue(
        user=user, csr=csr or policy_csr(user), validity_days=validity_days, name=name, origin=services.Origin(user)
    )


def parsed(certificate: Certificate) -> x509.Certificate:
    return x509.load_pem_x509_certificate(certificate.certificate_pem.encode())


def extension(certificate: x509.Certificate, oid):
    return certificate.extensions.get_extension_for_oid(oid)


@pytest.fixture
def portal_ca(emulator):
    return trusted_portal_ca()


def fetch_crl(client: Client, authority: CertificateAuthority) -> x509.CertificateRevocationList:
    response = client.get(reverse("certificates:crl", args=[authority.pk]))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pkix-crl"
    return x509.load_der_x509_crl(response.content)


# --- issuance -------------------------------------------------------------------------------------------------


def test_the_portal_ca_signs_with_the_documented_profile_field_by_field(portal_ca, alice, settings):
    settings.PORTAL_BASE_URL = "https://portal.example.com"
    certificate = issue(alice, validity_days=90)
    leaf, ca = parsed(certificate), x509.load_pem_x509_certificate(portal_ca.certificate_pem.encode())

    leaf.verify_directly_issued_by(ca)
    assert leaf.issuer == ca.subject
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == f"portal-user-{alice.pk}"
    assert (
        leaf.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value
        == settings.CERTIFICATE_SUBJECT_ORGANIZATION
    )
    constraints = extension(leaf, ExtensionOID.BASIC_CONSTRAINTS)
    assert constraints.critical
    assert constraints.value.ca is False
    usage = extension(leaf, ExtensionOID.KEY_USAGE)
    assert usage.critical
    assert usage.value.digital_signature
    assert not usage.value.key_cert_sign
    assert not usage.value.crl_sign
    assert not usage.value.key_encipherment
    assert list(extension(leaf, ExtensionOID.EXTENDED_KEY_USAGE).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert extension(leaf, ExtensionOID.SUBJECT_KEY_IDENTIFIER).value == x509.SubjectKeyIdentifier.from_public_key(
        leaf.public_key()
    )
    ca_ski = extension(ca, ExtensionOID.SUBJECT_KEY_IDENTIFIER).value.digest
    assert extension(leaf, ExtensionOID.AUTHORITY_KEY_IDENTIFIER).value.key_identifier == ca_ski
    [point] = extension(leaf, ExtensionOID.CRL_DISTRIBUTION_POINTS).value
    assert point.full_name[0].value == f"https://portal.example.com/pki/ca-{portal_ca.pk}.crl"
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == timedelta(days=90, minutes=5)
    # No SAN and nothing else the CSR might have asked for.
    assert {e.oid for e in leaf.extensions} == {
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER,
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
        ExtensionOID.CRL_DISTRIBUTION_POINTS,
    }
    # The row records it as the rules see it.
    assert certificate.authority == portal_ca
    assert certificate.status == Certificate.Status.ACTIVE
    assert certificate.cloudflare_id == ""
    assert certificate.serial_number == format(leaf.serial_number, "X")
    assert certificate.fingerprint_sha256 == leaf.fingerprint(hashes.SHA256()).hex()
    assert certificate.expires_on == leaf.not_valid_after_utc
    event = certificate.events.get()
    assert (event.action, event.actor, event.detail["authority_id"]) == (AuditEvent.Action.ISSUED, alice, portal_ca.pk)


def test_serials_carry_the_zone_marker_and_the_owner_tag_then_80_random_bits(portal_ca, alice, bob):
    first, second, other = issue(alice), issue(alice, name="ci"), issue(bob)
    marker = Zone.objects.get(zone_id=ZONE).serial_marker
    alice_tag = OwnerSerialTag.objects.get(user=alice).tag
    for certificate in (first, second, other):
        serial = certificate.serial_number
        assert len(serial) == 36
        assert serial == serial.upper()
        assert serial[0] != "0"
        assert serial.startswith(marker)
        # Positive and at most 20 octets (RFC 5280 §4.1.2.2).
        assert 0 < parsed(certificate).serial_number < 2**159
    assert first.serial_number[8:16] == second.serial_number[8:16] == alice_tag
    assert other.serial_number[8:16] == OwnerSerialTag.objects.get(user=bob).tag != alice_tag
    assert first.serial_number[16:] != second.serial_number[16:]


def test_an_rsa_key_may_also_encipher(portal_ca, alice):
    certificate = issue(alice, csr=policy_csr(alice, key=make_key("rsa")))
    assert extension(parsed(certificate), ExtensionOID.KEY_USAGE).value.key_encipherment


def test_issuance_makes_no_cloudflare_call_and_requests_a_sync(portal_ca, emulator, alice):
    certificate = issue(alice)  # the sync it queues runs after the commit, which this test never reaches
    assert emulator.request_log == []
    assert certificate.status == Certificate.Status.ACTIVE
    assert FirewallState.objects.get(zone_id=ZONE).sync_requested_at is not None


def test_a_zone_with_a_portal_ca_is_not_capped_at_the_managed_quota(portal_ca, alice, bob, settings):
    settings.CLOUDFLARE_ZONE_CAPACITY = 2
    settings.CERTIFICATE_MAX_ACTIVE_PER_USER = 5
    issued = [issue(user, name=f"c{n}") for user in (alice, bob) for n in range(3)]
    assert {c.status for c in issued} == {Certificate.Status.ACTIVE}
    # Back to the managed CA: its own certificates count against the quota again, the portal's do not.
    Zone.objects.filter(zone_id=ZONE).update(issuer=None)
    issue(alice, name="managed-1")
    issue(alice, name="managed-2")
    with pytest.raises(QuotaError, match="no room"):
        issue(bob, name="managed-3")


def test_the_users_maximum_and_the_duplicate_key_check_still_apply(portal_ca, alice, settings):
    settings.CERTIFICATE_MAX_ACTIVE_PER_USER = 1
    key = make_key()
    issue(alice, csr=policy_csr(alice, key=key))
    with pytest.raises(QuotaError, match="the most allowed"):
        issue(alice, name="second")
    settings.CERTIFICATE_MAX_ACTIVE_PER_USER = 5
    with pytest.raises(PolicyError, match="exists already"):
        issue(alice, csr=policy_csr(alice, key=key))


def test_a_bad_csr_gets_the_same_refusal_as_with_the_managed_ca(portal_ca, alice, bob):
    with pytest.raises(PolicyError, match="The subject must be exactly") as refused:
        issue(alice, csr=policy_csr(bob))  # someone else's subject
    Zone.objects.filter(zone_id=ZONE).update(issuer=None)
    with pytest.raises(PolicyError) as managed_refusal:
        issue(alice, csr=policy_csr(bob))
    assert refused.value.message == managed_refusal.value.message
    assert not Certificate.objects.exists()


def test_without_the_encryption_key_issuance_refuses_clearly_and_records_nothing(portal_ca, alice, settings, caplog):
    settings.PORTAL_CA_ENCRYPTION_KEY = ""
    with pytest.raises(AuthorityUnavailableError, match="cannot be unlocked") as refused:
        issue(alice)
    assert refused.value.status_code == 503
    assert "PORTAL_CA_ENCRYPTION_KEY" not in refused.value.message  # the user is told it is the operators' setting
    assert "PORTAL_CA_ENCRYPTION_KEY" in caplog.text  # the operators are told which
    assert portal_ca.encrypted_key not in caplog.text
    assert not Certificate.objects.exists()


def test_with_the_wrong_encryption_key_issuance_refuses(portal_ca, alice, settings, caplog):
    from cryptography.fernet import Fernet

    settings.PORTAL_CA_ENCRYPTION_KEY = Fernet.generate_key().decode()
    with pytest.raises(AuthorityUnavailableError, match="cannot be unlocked"):
        issue(alice)
    assert "encrypted with another key" in caplog.text


def test_an_old_encryption_key_kept_on_a_second_line_still_decrypts(portal_ca, alice, settings):
    from cryptography.fernet import Fernet

    settings.PORTAL_CA_ENCRYPTION_KEY = Fernet.generate_key().decode() + "\n" + settings.PORTAL_CA_ENCRYPTION_KEY
    assert issue(alice).status == Certificate.Status.ACTIVE


def test_a_portal_ca_not_trusted_by_cloudflare_yet_does_not_issue(portal_ca, alice):
    CertificateAuthority.objects.filter(pk=portal_ca.pk).update(status=CertificateAuthority.Status.CREATED)
    with pytest.raises(AuthorityUnavailableError, match="not trusted by Cloudflare yet"):
        issue(alice)
    assert not Certificate.objects.exists()


def test_the_key_is_stored_encrypted(portal_ca):
    assert "PRIVATE KEY" not in portal_ca.encrypted_key
    key = keystore.decrypt_key(portal_ca.encrypted_key)
    ca = x509.load_pem_x509_certificate(portal_ca.certificate_pem.encode())
    assert key.public_key() == ca.public_key()


# --- revocation and the CRL ------------------------------------------------------------------------------------


def test_revocation_is_immediate_and_reaches_the_crl(portal_ca, alice, client):
    certificate = issue(alice)
    other = issue(alice, name="ci")
    first_crl = fetch_crl(client, portal_ca)
    assert len(first_crl) == 0

    revoked = services.certificate_revoke(certificate=certificate, origin=services.Origin(alice), reason="laptop lost")

    assert revoked.status == Certificate.Status.REVOKED
    assert revoked.revoked_at is not None
    event = revoked.events.order_by("-id").first()
    assert (event.action, event.actor, event.detail) == (AuditEvent.Action.REVOKED, alice, {"reason": "laptop lost"})
    crl = fetch_crl(client, portal_ca)
    ca = x509.load_pem_x509_certificate(portal_ca.certificate_pem.encode())
    assert crl.is_signature_valid(ca.public_key())
    assert crl.issuer == ca.subject
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert number > first_crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert crl.next_update_utc > crl.last_update_utc
    entry = crl.get_revoked_certificate_by_serial_number(parsed(certificate).serial_number)
    assert entry is not None
    assert entry.revocation_date_utc == revoked.revoked_at.replace(microsecond=0).astimezone(UTC)
    assert crl.get_revoked_certificate_by_serial_number(parsed(other).serial_number) is None


def test_a_revoked_portal_certificate_cannot_be_reactivated_or_revoked_twice(portal_ca, alice):
    certificate = services.certificate_revoke(certificate=issue(alice), origin=services.Origin(alice))
    with pytest.raises(InvalidTransitionError):
        services.certificate_reactivate(certificate=certificate, origin=services.Origin(alice))
    with pytest.raises(InvalidTransitionError):
        services.certificate_revoke(certificate=certificate, origin=services.Origin(alice))


def test_the_crl_number_only_grows_and_a_fresh_crl_is_not_rebuilt(portal_ca, alice, client):
    numbers = []
    for _ in range(2):
        crl = fetch_crl(client, portal_ca)
        numbers.append(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)
    services.certificate_revoke(certificate=issue(alice), origin=services.Origin(alice))
    crl = fetch_crl(client, portal_ca)
    numbers.append(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)
    assert numbers[0] == numbers[1] < numbers[2]


def test_a_crl_whose_rebuild_was_lost_is_rebuilt_when_fetched(portal_ca, alice, client, monkeypatch):
    from certificates import tasks

    fetch_crl(client, portal_ca)
    certificate = issue(alice)
    monkeypatch.setattr(tasks.build_crl, "delay", lambda *args: None)  # Redis was down: the task never ran
    monkeypatch.setattr("certificates.enqueue._task", lambda name: type("Lost", (), {"delay": lambda *a: None})())
    services.certificate_revoke(certificate=certificate, origin=services.Origin(alice))
    crl = fetch_crl(client, portal_ca)
    assert crl.get_revoked_certificate_by_serial_number(parsed(certificate).serial_number) is not None


def test_the_crl_is_rebuilt_by_beat_before_its_next_update(portal_ca, client):
    from certificates import tasks

    fetch_crl(client, portal_ca)
    CertificateAuthority.objects.filter(pk=portal_ca.pk).update(
        crl_next_update=CertificateAuthority.objects.get(pk=portal_ca.pk).crl_this_update + timedelta(hours=1)
    )
    assert tasks.refresh_crls.apply().get() == [portal_ca.pk]
    assert tasks.refresh_crls.apply().get() == []


def test_a_deactivated_owners_certificates_are_on_hold_in_the_crl_until_activated(portal_ca, alice, client):
    certificate = issue(alice)
    serial = parsed(certificate).serial_number
    alice.is_active = False
    alice.save()
    entry = fetch_crl(client, portal_ca).get_revoked_certificate_by_serial_number(serial)
    reason = entry.extensions.get_extension_for_oid(CRLEntryExtensionOID.CRL_REASON).value.reason
    assert reason == x509.ReasonFlags.certificate_hold
    alice.is_active = True
    alice.save()
    assert fetch_crl(client, portal_ca).get_revoked_certificate_by_serial_number(serial) is None


def test_expired_revoked_certificates_leave_the_crl(portal_ca, alice, client):
    certificate = services.certificate_revoke(certificate=issue(alice), origin=services.Origin(alice))
    Certificate.objects.filter(pk=certificate.pk).update(expires_on=certificate.issued_on)
    CertificateAuthority.objects.filter(pk=portal_ca.pk).update(crl_der=b"")
    assert len(fetch_crl(client, portal_ca)) == 0


def test_the_crl_and_ca_urls_are_public_and_the_pem_forms_match(portal_ca, alice, client):
    services.certificate_revoke(certificate=issue(alice), origin=services.Origin(alice))
    der = client.get(reverse("certificates:crl", args=[portal_ca.pk])).content
    pem = client.get(reverse("certificates:crl_pem", args=[portal_ca.pk]))
    assert pem.status_code == 200
    assert x509.load_pem_x509_crl(pem.content) == x509.load_der_x509_crl(der)
    ca = client.get(reverse("certificates:authority_certificate", args=[portal_ca.pk]))
    assert x509.load_pem_x509_certificate(ca.content).subject.rfc4514_string() == portal_ca.subject
    assert b"PRIVATE" not in ca.content
    assert client.get("/pki/ca-999999.crl").status_code == 404


def test_without_the_key_the_last_valid_crl_is_still_served_then_503(portal_ca, client, settings):
    fetch_crl(client, portal_ca)
    CertificateAuthority.objects.filter(pk=portal_ca.pk).update(
        crl_requested_at=portal_ca.created_at + timedelta(days=1)
    )
    settings.PORTAL_CA_ENCRYPTION_KEY = ""
    assert client.get(reverse("certificates:crl", args=[portal_ca.pk])).status_code == 200
    CertificateAuthority.objects.filter(pk=portal_ca.pk).update(crl_next_update=portal_ca.created_at)
    response = client.get(reverse("certificates:crl", args=[portal_ca.pk]))
    assert response.status_code == 503
    assert b"PORTAL_CA" not in response.content  # the setting's name is for staff, in the log


def test_an_admin_revoking_someone_elses_certificate_is_not_rate_limited(portal_ca, alice, charlie, settings):
    from portal.env import Rate

    settings.CERTIFICATE_REVOKE_RATE_LIMIT = Rate(1, 3600)
    first, second = issue(alice), issue(alice, name="ci")
    services.certificate_revoke(certificate=first, origin=services.Origin(alice))
    from certificates.services.errors import RateLimitedError

    with pytest.raises(RateLimitedError):
        services.certificate_revoke(certificate=second, origin=services.Origin(alice))
    assert services.certificate_revoke(certificate=second, origin=services.Origin(charlie)).status == "revoked"


def test_the_api_issues_with_the_portal_ca_and_says_where_its_crl_is(portal_ca, api, alice, emulator, settings):
    settings.PORTAL_BASE_URL = "https://portal.example.com"
    response = issue_via_api(api, alice)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "active"
    assert body["issuer"] == {
        "kind": "portal_ca",
        "name": portal_ca.name,
        "ca_certificate_url": f"https://portal.example.com/pki/ca-{portal_ca.pk}.pem",
        "crl_url": f"https://portal.example.com/pki/ca-{portal_ca.pk}.crl",
    }
    assert x509.load_pem_x509_certificate(body["certificate"].encode()).serial_number == int(body["serial_number"], 16)
    assert emulator.request_log == []
    listed = api.as_user(alice).get("/certificates").json()["items"]
    assert [item["issuer"]["kind"] for item in listed] == ["portal_ca"]


def test_a_managed_ca_certificate_says_so_and_has_no_crl(emulator, api, alice):
    body = issue_via_api(api, alice).json()
    assert body["issuer"] == {
        "kind": "cloudflare_managed",
        "name": "Cloudflare managed CA",
        "ca_certificate_url": None,
        "crl_url": None,
    }


def test_an_admin_revokes_portal_certificates_at_once_with_the_reason(
    portal_ca, alice, charlie, mailoutbox, django_capture_on_commit_callbacks
):
    from tests.support.accounts import signed_in

    certificate = issue(alice)
    staff = signed_in(charlie)
    selection = {"action": "revoke_selected", "_selected_action": [certificate.pk], "reason": "contractor left"}

    # The owner's email goes out from its own task, queued when the revocation commits.
    with django_capture_on_commit_callbacks(execute=True):
        done = staff.post("/admin/certificates/certificate/", selection, follow=True)

    assert b"1 certificate revoked." in done.content
    certificate.refresh_from_db()
    assert certificate.status == Certificate.Status.REVOKED
    event = certificate.events.get(action=AuditEvent.Action.REVOKED)
    assert (event.actor, event.detail) == (charlie, {"reason": "contractor left"})
    assert [message.to for message in mailoutbox] == [[alice.email]]


def test_fetching_a_fresh_crl_takes_no_row_lock(portal_ca, client):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    fetch_crl(client, portal_ca)  # builds it
    with CaptureQueriesContext(connection) as queries:
        fetch_crl(client, portal_ca)
    assert not [query for query in queries.captured_queries if "FOR UPDATE" in query["sql"].upper()]
