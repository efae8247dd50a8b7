"""Certificates made outside the portal (Cloudflare's dashboard): staff adopt them for a user, or revoke them."""

from __future__ import annotations

import dataclasses
import hashlib
from unittest import mock

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.urls import reverse

from certificates import services, tasks
from certificates.cloudflare_client import get_cloudflare_client
from certificates.models import AuditEvent, Certificate, UnknownCertificate
from certificates.services import lifecycle
from cloudflare.client import CloudflareClient
from portal.env import Rate
from tests.support.accounts import signed_in
from tests.support.pki import make_csr, make_key, policy_csr

ZONE = "0" * 32
CHANGELIST = reverse("admin:certificates_unknowncertificate_changelist")
STAFF = services.Origin(actor=None)


def made_in_the_dashboard(*, key=None, validity_days: int = 30):
    """What Cloudflare's dashboard does: a create call with a CSR, bypassing the portal."""
    csr = make_csr("made-in-dashboard", key=key)
    return get_cloudflare_client().create_client_certificate(ZONE, csr=csr, validity_days=validity_days)


@pytest.fixture
def stranger(emulator, db):
    """A dashboard certificate, listed by reconciliation as unknown: (what Cloudflare made, its unknown row)."""
    key = make_key()
    issued = made_in_the_dashboard(key=key)
    lifecycle.zone_reconcile(zone_id=ZONE)
    return issued, UnknownCertificate.objects.get(cloudflare_id=issued.id), key


@pytest.fixture
def staff(charlie):
    return signed_in(charlie)


def adopt(client, unknown, email):
    data = {"action": "adopt_selected", "_selected_action": [unknown.pk], "email": email}
    return client.post(CHANGELIST, data, follow=True)


def der_sha256(pem: str) -> str:
    return hashlib.sha256(
        x509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER)
    ).hexdigest()


def spki_sha256(key) -> str:
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


# -- the list -----------------------------------------------------------------------------------------------


def test_the_list_says_unknown_certificates_are_blocked_until_adopted_or_revoked(staff, stranger):
    issued, _unknown, _key = stranger

    response = staff.get(CHANGELIST)

    assert response.status_code == 200
    assert issued.fingerprint_sha256.encode() in response.content
    assert b"made-in-dashboard" in response.content
    assert b"blocked until adopted or revoked" in response.content
    assert b"only certificates the portal holds pass its firewall rules" in response.content
    assert b"Adopt selected certificates" in response.content
    assert b"Revoke selected certificates at Cloudflare" in response.content


# -- adoption -----------------------------------------------------------------------------------------------


def test_staff_adopt_a_dashboard_certificate_and_it_becomes_the_owners(staff, stranger, alice, charlie):
    issued, unknown, key = stranger

    form = staff.post(CHANGELIST, {"action": "adopt_selected", "_selected_action": [unknown.pk]})
    assert form.status_code == 200
    assert b"Owner&#x27;s email address" in form.content
    assert not Certificate.objects.exists(), "the first post only asks for the owner"

    done = adopt(staff, unknown, "Alice@Example.com")

    assert b"1 certificate adopted for alice@example.com" in done.content
    certificate = Certificate.objects.get()
    assert certificate.owner == alice
    assert certificate.status == Certificate.Status.ACTIVE
    assert (certificate.zone_id, certificate.cloudflare_id) == (ZONE, issued.id)
    assert certificate.fingerprint_sha256 == der_sha256(issued.certificate)
    assert certificate.public_key_sha256 == spki_sha256(key)
    assert certificate.key_type == "ec-p256"
    assert certificate.common_name == "made-in-dashboard"
    pem = x509.load_pem_x509_certificate(issued.certificate.encode())
    assert certificate.serial_number == format(pem.serial_number, "x")
    assert (certificate.issued_on, certificate.expires_on) == (pem.not_valid_before_utc, pem.not_valid_after_utc)
    assert certificate.validity_days == 30
    assert certificate.csr == ""
    assert certificate.certificate_pem == issued.certificate
    assert not UnknownCertificate.objects.exists()
    event = certificate.events.get(action=AuditEvent.Action.ADOPTED_BY_STAFF)
    assert event.actor == charlie
    assert event.detail["cloudflare_id"] == issued.id
    assert event.detail["fingerprint_sha256"] == certificate.fingerprint_sha256


def test_a_fresh_reconciliation_no_longer_lists_an_adopted_certificate(stranger, alice):
    _issued, unknown, _key = stranger
    services.unknown_certificate_adopt(unknown=unknown, owner=alice, origin=STAFF)

    result = lifecycle.zone_reconcile(zone_id=ZONE)

    assert result.unknown == 0
    assert not UnknownCertificate.objects.exists()
    assert Certificate.objects.get().status == Certificate.Status.ACTIVE


def test_the_owner_sees_the_adopted_certificate_on_the_dashboard_its_page_and_the_api(stranger, alice):
    _issued, unknown, _key = stranger
    certificate = services.unknown_certificate_adopt(unknown=unknown, owner=alice, origin=STAFF)
    owner = signed_in(alice)

    dashboard = owner.get(reverse("certificates:dashboard"))
    detail = owner.get(reverse("certificates:detail", args=[certificate.pk]))
    listing = owner.get("/api/v1/certificates").json()
    renew = owner.get(reverse("certificates:new"), {"renew": certificate.pk})

    assert certificate.name.encode() in dashboard.content
    assert detail.status_code == 200
    assert b"adopted by staff on" in detail.content
    assert b"the portal never had it" in detail.content
    assert [item["fingerprint_sha256"] for item in listing["items"]] == [certificate.fingerprint_sha256]
    assert renew.status_code == 200
    assert certificate.name.encode() in renew.content, "renewing starts a certificate with the same name"


def test_a_portal_certificate_does_not_say_it_was_adopted(emulator, alice):
    certificate = services.certificate_issue(
        user=alice, csr=policy_csr(alice), validity_days=365, name="laptop", origin=services.Origin(actor=alice)
    )

    detail = signed_in(alice).get(reverse("certificates:detail", args=[certificate.pk]))

    assert b"adopted by staff" not in detail.content
    assert b"made in your browser" in detail.content


def test_adoption_queues_a_firewall_sync_after_commit(stranger, alice, django_capture_on_commit_callbacks):
    _issued, unknown, _key = stranger
    with mock.patch.object(tasks.sync_firewall, "apply_async") as apply_async:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            services.unknown_certificate_adopt(unknown=unknown, owner=alice, origin=STAFF)
        apply_async.assert_not_called()
        for callback in callbacks:
            callback()
    apply_async.assert_called_once_with(args=(ZONE,), countdown=5)


def test_an_unknown_email_is_refused_and_nothing_changes(staff, stranger, alice):
    _issued, unknown, _key = stranger

    response = adopt(staff, unknown, "nobody@example.com")

    assert response.status_code == 200
    assert b"No account has the address nobody@example.com; nothing was adopted." in response.content
    assert not Certificate.objects.exists()
    assert UnknownCertificate.objects.filter(pk=unknown.pk).exists()
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.ADOPTED_BY_STAFF).exists()


def test_a_second_adoption_of_the_same_row_is_refused(stranger, alice, bob):
    _issued, unknown, _key = stranger
    services.unknown_certificate_adopt(unknown=unknown, owner=alice, origin=STAFF)

    # A second admin whose page still showed the row.
    with pytest.raises(services.InvalidTransitionError, match="adopted or left the zone meanwhile"):
        services.unknown_certificate_adopt(unknown=unknown, owner=bob, origin=STAFF)

    assert Certificate.objects.get().owner == alice


def test_a_row_taken_while_cloudflare_answered_is_refused(stranger, alice):
    _issued, unknown, _key = stranger
    real = CloudflareClient.get_client_certificate

    def meanwhile_another_admin_adopts(client, zone_id, certificate_id):
        answer = real(client, zone_id, certificate_id)
        UnknownCertificate.objects.filter(pk=unknown.pk).delete()
        return answer

    with (
        mock.patch.object(CloudflareClient, "get_client_certificate", meanwhile_another_admin_adopts),
        pytest.raises(services.InvalidTransitionError, match="adopted or left the zone meanwhile"),
    ):
        services.unknown_certificate_adopt(unknown=unknown, owner=alice, origin=STAFF)

    assert not Certificate.objects.exists()


def test_a_stale_row_for_an_adopted_certificate_is_refused_cleanly(staff, stranger, alice, bob):
    issued, unknown, _key = stranger
    services.unknown_certificate_adopt(unknown=unknown, owner=alice, origin=STAFF)
    # A reconciliation that listed the zone before the adoption committed writes the row back.
    stale = UnknownCertificate.objects.create(zone_id=ZONE, cloudflare_id=issued.id, status="active")

    response = adopt(staff, stale, "bob@example.com")

    assert b"is one of the portal&#x27;s already" in response.content
    assert Certificate.objects.get().owner == alice
    assert UnknownCertificate.objects.filter(pk=stale.pk).exists()


def test_a_certificate_revoked_at_cloudflare_cannot_be_adopted(staff, stranger, alice):
    issued, unknown, _key = stranger
    get_cloudflare_client().revoke_client_certificate(ZONE, issued.id)  # in the dashboard, after reconciliation

    response = adopt(staff, unknown, "alice@example.com")

    assert b"Cloudflare has this certificate pending revocation" in response.content
    assert not Certificate.objects.exists()
    assert UnknownCertificate.objects.filter(pk=unknown.pk).exists()


def test_a_certificate_gone_from_cloudflare_cannot_be_adopted(stranger, alice):
    _issued, unknown, _key = stranger
    UnknownCertificate.objects.filter(pk=unknown.pk).update(cloudflare_id="0" * 32)
    unknown.refresh_from_db()

    with pytest.raises(services.ServiceError, match="does not know this certificate"):
        services.unknown_certificate_adopt(unknown=unknown, owner=alice, origin=STAFF)

    assert not Certificate.objects.exists()


def test_an_expired_certificate_cannot_be_adopted(emulator, alice):
    emulator.clock.advance(-2 * 86400)
    made_in_the_dashboard(validity_days=1)
    emulator.clock.advance(2 * 86400)
    lifecycle.zone_reconcile(zone_id=ZONE)

    with pytest.raises(services.InvalidTransitionError, match="expired"):
        services.unknown_certificate_adopt(unknown=UnknownCertificate.objects.get(), owner=alice, origin=STAFF)

    assert not Certificate.objects.exists()


def test_a_fingerprint_cloudflare_reports_is_checked_against_the_certificate(stranger, alice):
    _issued, unknown, _key = stranger
    real = CloudflareClient.get_client_certificate

    def lying(client, zone_id, certificate_id):
        return dataclasses.replace(real(client, zone_id, certificate_id), fingerprint_sha256="ab" * 32)

    with (
        mock.patch.object(CloudflareClient, "get_client_certificate", lying),
        pytest.raises(services.PolicyError, match="does not have the fingerprint"),
    ):
        services.unknown_certificate_adopt(unknown=unknown, owner=alice, origin=STAFF)

    assert not Certificate.objects.exists()


def test_adoption_respects_the_owners_maximum(stranger, alice, settings):
    _issued, unknown, _key = stranger
    settings.CERTIFICATE_MAX_ACTIVE_PER_USER = 1
    services.certificate_issue(
        user=alice, csr=policy_csr(alice), validity_days=365, name="laptop", origin=services.Origin(actor=alice)
    )

    with pytest.raises(services.QuotaError, match="already holds 1 certificates, the most allowed"):
        services.unknown_certificate_adopt(unknown=unknown, owner=alice, origin=STAFF)

    assert Certificate.objects.filter(owner=alice).count() == 1
    assert UnknownCertificate.objects.filter(pk=unknown.pk).exists()


def test_an_adopted_certificate_does_not_count_against_the_owners_issuance_rate(stranger, alice, settings):
    _issued, unknown, _key = stranger
    settings.CERTIFICATE_ISSUE_RATE_LIMIT = Rate(count=1, period=3600)
    services.unknown_certificate_adopt(unknown=unknown, owner=alice, origin=STAFF)

    issued = services.certificate_issue(
        user=alice, csr=policy_csr(alice), validity_days=365, name="laptop", origin=services.Origin(actor=alice)
    )

    assert issued.status == Certificate.Status.ACTIVE


def test_adoption_ignores_the_admission_policy_staff_decide(stranger, alice, settings):
    _issued, unknown, _key = stranger
    settings.PORTAL_ADMISSION = "approval"  # alice was never approved to issue

    certificate = services.unknown_certificate_adopt(unknown=unknown, owner=alice, origin=STAFF)

    assert certificate.owner == alice


def test_a_deactivated_account_cannot_be_given_a_certificate(stranger, alice):
    _issued, unknown, _key = stranger
    alice.is_active = False
    alice.save()

    with pytest.raises(services.PolicyError, match="deactivated"):
        services.unknown_certificate_adopt(unknown=unknown, owner=alice, origin=STAFF)

    assert not Certificate.objects.exists()


# -- revocation ---------------------------------------------------------------------------------------------


def test_staff_revoke_an_unknown_certificate_at_cloudflare_with_a_reason(staff, stranger, charlie):
    issued, unknown, _key = stranger
    selection = {"action": "revoke_selected", "_selected_action": [unknown.pk]}

    form = staff.post(CHANGELIST, selection)
    assert b"reason" in form.content
    assert get_cloudflare_client().get_client_certificate(ZONE, issued.id).status == "active"

    done = staff.post(CHANGELIST, {**selection, "reason": "nobody claims it"}, follow=True)

    assert b"1 certificate revoked (pending at Cloudflare)" in done.content
    assert get_cloudflare_client().get_client_certificate(ZONE, issued.id).status == "pending_revocation"
    unknown.refresh_from_db()
    assert unknown.status == "pending_revocation"
    event = AuditEvent.objects.get(action=AuditEvent.Action.UNKNOWN_REVOKED)
    assert event.actor == charlie
    assert (event.old_status, event.new_status) == ("active", "pending_revocation")
    assert event.detail == {
        "cloudflare_id": issued.id,
        "fingerprint_sha256": issued.fingerprint_sha256,
        "common_name": "made-in-dashboard",
        "reason": "nobody claims it",
    }
    assert not Certificate.objects.exists()


def test_revoking_twice_is_refused(stranger):
    _issued, unknown, _key = stranger
    services.unknown_certificate_revoke(unknown=unknown, origin=STAFF, reason="unclaimed")

    with pytest.raises(services.InvalidTransitionError, match="pending revocation already"):
        services.unknown_certificate_revoke(unknown=unknown, origin=STAFF, reason="unclaimed")

    assert AuditEvent.objects.filter(action=AuditEvent.Action.UNKNOWN_REVOKED).count() == 1


def test_a_revoked_unknown_certificate_cannot_then_be_adopted(stranger, alice):
    _issued, unknown, _key = stranger
    services.unknown_certificate_revoke(unknown=unknown, origin=STAFF, reason="unclaimed")

    with pytest.raises(services.InvalidTransitionError, match="cannot be adopted"):
        services.unknown_certificate_adopt(unknown=unknown, owner=alice, origin=STAFF)


def test_revoking_a_row_adopted_meanwhile_is_refused_and_leaves_cloudflare_alone(stranger, alice):
    issued, unknown, _key = stranger
    services.unknown_certificate_adopt(unknown=unknown, owner=alice, origin=STAFF)
    stale = UnknownCertificate.objects.create(zone_id=ZONE, cloudflare_id=issued.id, status="active")

    with pytest.raises(services.InvalidTransitionError, match="one of the portal's already"):
        services.unknown_certificate_revoke(unknown=stale, origin=STAFF, reason="unclaimed")
    with pytest.raises(services.InvalidTransitionError, match="adopted or left the zone meanwhile"):
        services.unknown_certificate_revoke(unknown=unknown, origin=STAFF, reason="unclaimed")

    assert get_cloudflare_client().get_client_certificate(ZONE, issued.id).status == "active"


def test_revocation_needs_a_reason(stranger):
    _issued, unknown, _key = stranger

    with pytest.raises(services.PolicyError, match="Give a reason"):
        services.unknown_certificate_revoke(unknown=unknown, origin=STAFF, reason="  ")

    assert get_cloudflare_client().get_client_certificate(ZONE, unknown.cloudflare_id).status == "active"


def test_revocation_queues_a_firewall_sync_after_commit(stranger, django_capture_on_commit_callbacks):
    _issued, unknown, _key = stranger
    with (
        mock.patch.object(tasks.sync_firewall, "apply_async") as apply_async,
        django_capture_on_commit_callbacks(execute=True),
    ):
        services.unknown_certificate_revoke(unknown=unknown, origin=STAFF, reason="unclaimed")
    apply_async.assert_called_once_with(args=(ZONE,), countdown=5)


# -- who may -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["adopt_selected", "revoke_selected"])
def test_non_staff_cannot_reach_the_actions(stranger, alice, action):
    issued, unknown, _key = stranger
    data = {"action": action, "_selected_action": [unknown.pk], "email": alice.email, "reason": "mine now"}

    response = signed_in(alice).post(CHANGELIST, data)

    assert response.status_code == 302
    assert not Certificate.objects.exists()
    assert get_cloudflare_client().get_client_certificate(ZONE, issued.id).status == "active"


def test_staff_without_the_change_permission_get_no_actions(stranger, alice):
    from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
    from django.contrib.auth.models import Permission

    _issued, unknown, _key = stranger
    alice.is_staff = True
    alice.save()
    alice.user_permissions.add(Permission.objects.get(codename="view_unknowncertificate"))
    TOTP.activate(alice, generate_totp_secret())
    viewer = signed_in(alice)

    page = viewer.get(CHANGELIST)
    viewer.post(CHANGELIST, {"action": "adopt_selected", "_selected_action": [unknown.pk], "email": alice.email})

    assert page.status_code == 200
    assert b"Adopt selected certificates" not in page.content
    assert not Certificate.objects.exists()
