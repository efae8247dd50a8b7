"""Issuance, reconciliation, revocation and reactivation against the in-process emulator."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from cryptography import x509
from django.utils import timezone

from certificates import services
from certificates.models import AuditEvent, Certificate
from tests.support.pki import make_key, policy_csr

ORIGIN_ADDR = "198.51.100.7"


def origin(user):
    return services.Origin(actor=user, remote_addr=ORIGIN_ADDR)


def issue(user, *, name="laptop", validity_days=365, csr=None):
    return services.certificate_issue(
        user=user, csr=csr or policy_csr(user), validity_days=validity_days, name=name, origin=origin(user)
    )


def test_it_issues_a_certificate_and_records_what_cloudflare_returned(emulator, alice):
    certificate = issue(alice)

    assert certificate.status == Certificate.Status.ACTIVE
    assert certificate.zone_id == "0" * 32
    assert len(certificate.cloudflare_id) == 36
    parsed = x509.load_pem_x509_certificate(certificate.certificate_pem.encode())
    assert certificate.fingerprint_sha256 == parsed.fingerprint(parsed.signature_hash_algorithm.__class__()).hex()
    assert certificate.common_name == f"portal-user-{alice.pk}"
    assert certificate.expires_on > certificate.issued_on
    event = certificate.events.get()
    assert (event.action, event.actor, event.remote_addr) == (AuditEvent.Action.ISSUED, alice, ORIGIN_ADDR)


def test_it_refuses_a_bad_request_before_calling_cloudflare(emulator, alice, bob):
    with pytest.raises(services.PolicyError, match=f"CN=portal-user-{alice.pk}"):
        issue(alice, csr=policy_csr(bob))
    with pytest.raises(services.PolicyError, match="valid for 30, 90, 180, 365 days"):
        issue(alice, validity_days=400)
    with pytest.raises(services.PolicyError, match="name"):
        issue(alice, name="  ")

    assert emulator.request_log == []
    assert not Certificate.objects.exists()


def test_it_enforces_the_per_user_maximum(emulator, alice, settings):
    settings.CERTIFICATE_MAX_ACTIVE_PER_USER = 2
    issue(alice, name="one")
    issue(alice, name="two")

    with pytest.raises(services.QuotaError, match="2 active certificates"):
        issue(alice, name="three")
    assert len(emulator.request_log) == 2


def test_revoked_certificates_free_the_users_slot(emulator, alice, settings):
    settings.CERTIFICATE_MAX_ACTIVE_PER_USER = 1
    first = issue(alice, name="one")
    services.certificate_revoke(certificate=first, origin=origin(alice))

    assert issue(alice, name="two").status == Certificate.Status.ACTIVE


def test_cloudflares_zone_quota_becomes_a_clear_message(emulator, alice, bob):
    issue(bob)
    # Cloudflare counts certificates the portal does not know of: its quota can bite first.
    emulator.settings = dataclasses.replace(emulator.settings, zone_capacity=1)

    with pytest.raises(services.QuotaError, match="The zone has no room for more certificates"):
        issue(alice)
    failed = Certificate.objects.get(owner=alice)
    assert failed.status == Certificate.Status.FAILED
    assert "1445" in failed.last_error


def test_it_refuses_to_reuse_a_key(emulator, alice):
    key = make_key()
    issue(alice, csr=policy_csr(alice, key=key))

    with pytest.raises(services.PolicyError, match="new key"):
        issue(alice, name="again", csr=policy_csr(alice, key=key))


def test_a_timed_out_create_is_adopted_not_repeated(emulator, alice):
    emulator.faults.create_commits_then_fails(mode="timeout")

    certificate = issue(alice)

    assert certificate.status == Certificate.Status.ACTIVE
    assert [e.method for e in emulator.request_log].count("POST") == 1
    assert Certificate.objects.count() == 1
    actions = list(certificate.events.order_by("id").values_list("action", flat=True))
    assert actions == [AuditEvent.Action.ISSUE_UNCONFIRMED, AuditEvent.Action.ADOPTED]


def test_a_create_that_never_reached_cloudflare_is_marked_failed(emulator, alice):
    emulator.faults.connect_error(times=10, method="POST")

    with pytest.raises(services.CloudflareUnavailableError, match="nothing was issued"):
        issue(alice)

    assert Certificate.objects.get().status == Certificate.Status.FAILED


def test_an_unconfirmed_create_that_cloudflare_does_not_have_is_failed_on_reconcile(emulator, alice):
    emulator.faults.create_commits_then_fails(mode="timeout")
    emulator.faults.server_error(times=10, status=503, method="GET")  # the immediate look-up fails too

    with pytest.raises(services.CloudflareUnavailableError, match="did not confirm"):
        issue(alice)
    certificate = Certificate.objects.get()
    assert certificate.status == Certificate.Status.UNCONFIRMED

    emulator.faults.clear()
    adopted = services.certificate_reconcile_unconfirmed(certificate=certificate, origin=origin(None))
    assert adopted.status == Certificate.Status.ACTIVE


def age(certificate, by):
    Certificate.objects.filter(pk=certificate.pk).update(updated_at=timezone.now() - by)


def test_an_unconfirmed_create_is_failed_only_after_the_grace_period(emulator, alice):
    # A 502 from the edge: the create may or may not have reached Cloudflare, and here it did not.
    emulator.faults.server_error(times=1, status=502, html=True, method="POST")

    with pytest.raises(services.CloudflareUnavailableError, match="keeps checking"):
        issue(alice)
    certificate = Certificate.objects.get()
    assert certificate.status == Certificate.Status.UNCONFIRMED, "a late create could still appear"

    age(certificate, services.unconfirmed_grace() - timedelta(seconds=30))
    assert services.certificate_reconcile_unconfirmed(certificate=certificate, origin=origin(None)).status == (
        Certificate.Status.UNCONFIRMED
    )
    age(certificate, services.unconfirmed_grace() + timedelta(seconds=1))
    settled = services.certificate_reconcile_unconfirmed(certificate=certificate, origin=origin(None))

    assert settled.status == Certificate.Status.FAILED
    assert certificate.events.filter(action=AuditEvent.Action.ISSUE_FAILED).exists()
    assert issue(alice, name="again").status == Certificate.Status.ACTIVE


def test_revoke_and_reactivate_follow_cloudflares_transitions(emulator, alice, charlie):
    certificate = issue(alice)

    revoked = services.certificate_revoke(certificate=certificate, origin=origin(charlie), reason="laptop lost")
    assert revoked.status == Certificate.Status.PENDING_REVOCATION
    with pytest.raises(services.InvalidTransitionError):
        services.certificate_revoke(certificate=revoked, origin=origin(charlie))

    reactivated = services.certificate_reactivate(certificate=revoked, origin=origin(charlie))
    assert reactivated.status == Certificate.Status.PENDING_REACTIVATION
    with pytest.raises(services.InvalidTransitionError, match="Only a certificate pending revocation"):
        services.certificate_reactivate(certificate=reactivated, origin=origin(charlie))

    events = list(certificate.events.order_by("id").values_list("action", "actor__username", "detail"))
    assert events[1] == (AuditEvent.Action.REVOCATION_REQUESTED, "charlie", {"reason": "laptop lost"})
    assert events[2][:2] == (AuditEvent.Action.REACTIVATION_REQUESTED, "charlie")


def test_a_concurrent_change_is_not_overwritten(emulator, alice):
    certificate = issue(alice)
    stale = Certificate.objects.get(pk=certificate.pk)
    services.certificate_revoke(certificate=certificate, origin=origin(alice))
    Certificate.objects.filter(pk=certificate.pk).update(status=Certificate.Status.REVOKED)  # a worker finished it

    result = services.certificate_revoke(certificate=stale, origin=origin(alice))  # Cloudflare: already pending

    assert result.status == Certificate.Status.REVOKED
    assert certificate.events.filter(action=AuditEvent.Action.REVOCATION_REQUESTED).count() == 1


def test_cloudflare_unavailable_changes_nothing(emulator, alice):
    certificate = issue(alice)
    emulator.faults.server_error(times=10, status=503, method="DELETE")

    with pytest.raises(services.CloudflareUnavailableError, match="nothing changed"):
        services.certificate_revoke(certificate=certificate, origin=origin(alice))
    assert Certificate.objects.get(pk=certificate.pk).status == Certificate.Status.ACTIVE


def test_api_tokens_are_stored_hashed_and_stop_working_when_revoked(db, alice):
    token, secret = services.api_token_create(user=alice, name="ci", origin=origin(alice))

    assert secret.startswith("mtp_")
    assert secret not in token.token_sha256
    assert services.api_token_authenticate(secret) == alice
    services.api_token_revoke(token=token, origin=origin(alice))
    assert services.api_token_authenticate(secret) is None
    assert services.api_token_authenticate("mtp_not-a-token") is None
