"""Django admin: staff revoke (with a reason) and reactivate through the same services as users."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from certificates import services
from certificates.models import AllowlistEntry, AuditEvent, Certificate
from tests.support.accounts import signed_in
from tests.support.pki import policy_csr

CHANGELIST = reverse("admin:certificates_certificate_changelist")


@pytest.fixture
def staff(charlie) -> Client:
    return signed_in(charlie)


@pytest.fixture
def certificates(emulator, alice, bob):
    return [
        services.certificate_issue(
            user=user,
            csr=policy_csr(user),
            validity_days=365,
            name=f"{user.username}-box",
            origin=services.Origin(actor=user),
        )
        for user in (alice, bob)
    ]


def test_the_list_shows_owner_status_and_fingerprint_and_searches(staff, certificates):
    response = staff.get(CHANGELIST, {"q": certificates[0].fingerprint_sha256})

    assert response.status_code == 200
    assert b"alice-box" in response.content
    assert b"bob-box" not in response.content
    assert staff.get(CHANGELIST, {"q": "bob@example.com"}).content.count(b"bob-box") >= 1
    assert staff.get(CHANGELIST, {"status__exact": "active", "expiry": "later"}).status_code == 200


def test_revoking_asks_for_a_reason_then_revokes_and_counts(staff, certificates, charlie):
    selection = {"action": "revoke_selected", "_selected_action": [c.pk for c in certificates]}

    form = staff.post(CHANGELIST, selection)
    assert b"reason" in form.content
    assert Certificate.objects.filter(status=Certificate.Status.ACTIVE).count() == 2

    done = staff.post(CHANGELIST, {**selection, "reason": "contractor left"}, follow=True)

    assert b"2 certificates revoked" in done.content
    assert Certificate.objects.filter(status=Certificate.Status.PENDING_REVOCATION).count() == 2
    event = AuditEvent.objects.filter(action=AuditEvent.Action.REVOCATION_REQUESTED).first()
    assert event.actor == charlie
    assert event.detail == {"reason": "contractor left"}


def test_reactivating_works_only_while_pending_revocation(staff, certificates):
    pending, active = certificates
    services.certificate_revoke(certificate=pending, origin=services.Origin(actor=None))

    response = staff.post(
        CHANGELIST, {"action": "reactivate_selected", "_selected_action": [pending.pk, active.pk]}, follow=True
    )

    assert b"1 certificate reactivated" in response.content
    assert b"Only a certificate pending revocation can be reactivated" in response.content
    assert Certificate.objects.get(pk=pending.pk).status == Certificate.Status.PENDING_REACTIVATION
    assert Certificate.objects.get(pk=active.pk).status == Certificate.Status.ACTIVE


def test_the_audit_log_is_read_only(staff, certificates):
    event = AuditEvent.objects.first()
    url = reverse("admin:certificates_auditevent_change", args=[event.pk])

    assert staff.get(reverse("admin:certificates_auditevent_changelist")).status_code == 200
    assert staff.post(url, {"action": "x"}).status_code == 403
    assert (
        staff.post(reverse("admin:certificates_auditevent_delete", args=[event.pk]), {"post": "yes"}).status_code == 403
    )


def test_the_allowlist_admin_is_read_only(staff, alice):
    entry = AllowlistEntry.objects.create(owner=alice, network="192.0.2.0/24")

    assert staff.get(reverse("admin:certificates_allowlistentry_changelist")).status_code == 200
    assert staff.get(reverse("admin:certificates_allowlistentry_add")).status_code == 403
    url = reverse("admin:certificates_allowlistentry_change", args=[entry.pk])
    assert staff.post(url, {"owner": alice.pk, "network": "0.0.0.0/0"}).status_code == 403
    delete = reverse("admin:certificates_allowlistentry_delete", args=[entry.pk])
    assert staff.post(delete, {"post": "yes"}).status_code == 403
    assert AllowlistEntry.objects.get(pk=entry.pk).network == "192.0.2.0/24"


def test_non_staff_cannot_reach_the_admin(db, alice):
    client = Client()
    client.force_login(alice)
    assert client.get(CHANGELIST).status_code == 302
