"""Workers' services: polling transitions, reconciliation, expiry, reminders."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from certificates import services
from certificates.cloudflare_client import get_cloudflare_client
from certificates.models import AuditEvent, Certificate, UnknownCertificate
from certificates.services import lifecycle
from portal.env import Rate
from tests.support.pki import make_csr, policy_csr

ZONE = "0" * 32


def issue(user, name="laptop"):
    return services.certificate_issue(
        user=user, csr=policy_csr(user), validity_days=365, name=name, origin=services.Origin(actor=user)
    )


def test_polling_moves_a_revoked_certificate_to_revoked_and_tells_the_owner(
    emulator, alice, django_capture_on_commit_callbacks
):
    certificate = issue(alice)
    services.certificate_revoke(certificate=certificate, origin=services.Origin(actor=alice))

    assert lifecycle.certificates_poll(zone_id=ZONE).changes == []  # Cloudflare is still processing it
    emulator.clock.advance(31)
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        result = lifecycle.certificates_poll(zone_id=ZONE)

    certificate.refresh_from_db()
    assert certificate.status == Certificate.Status.REVOKED
    assert [(c.old, c.new) for c in result.changes] == [("pending_revocation", "revoked")]
    assert certificate.events.filter(action=AuditEvent.Action.REVOKED).exists()
    assert len(mail.outbox) == 1
    assert "revoked" in mail.outbox[0].subject
    assert mail.outbox[0].to == ["alice@example.com"]


def test_polling_follows_a_reactivation_to_active(emulator, alice, charlie, django_capture_on_commit_callbacks):
    certificate = issue(alice)
    services.certificate_revoke(certificate=certificate, origin=services.Origin(actor=charlie))
    services.certificate_reactivate(certificate=certificate, origin=services.Origin(actor=charlie))
    emulator.clock.advance(31)
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.certificates_poll(zone_id=ZONE)

    certificate.refresh_from_db()
    assert certificate.status == Certificate.Status.ACTIVE
    assert certificate.events.filter(action=AuditEvent.Action.REACTIVATED, detail={"source": "polled"}).exists()
    assert [m.subject for m in mail.outbox] == [f"Certificate “{certificate.name}” reactivated"]


def test_polling_makes_no_call_when_nothing_is_in_flight(emulator, alice):
    issue(alice)
    calls_before = len(emulator.request_log)

    assert lifecycle.certificates_poll(zone_id=ZONE).pending == 0
    assert len(emulator.request_log) == calls_before


def test_polling_uses_list_calls_never_one_get_per_certificate(emulator, db, settings):
    from tests.conftest import make_user

    settings.CERTIFICATE_MAX_ACTIVE_PER_USER = 100
    settings.CERTIFICATE_ISSUE_RATE_LIMIT = Rate(count=100, period=3600)
    owner = make_user("fleet")
    issued = [issue(owner, name=f"n{n}") for n in range(60)]
    for certificate in issued:
        services.certificate_revoke(certificate=certificate, origin=services.Origin(actor=None))
    emulator.request_log.clear()

    lifecycle.certificates_poll(zone_id=ZONE)

    gets = [e for e in emulator.request_log if e.method == "GET"]
    assert all(e.path.endswith("/client_certificates") for e in gets), "no single-certificate GETs"
    # 60 pending revocation: 2 pages; pending reactivation: 1 (empty) page; nothing inferred.
    assert len(gets) == 3


def test_reconciliation_adopts_a_certificate_whose_create_timed_out(emulator, alice):
    emulator.faults.create_commits_then_fails(mode="timeout")
    emulator.faults.server_error(times=20, status=503, method="GET")  # the immediate check fails too
    with pytest.raises(services.CloudflareUnavailableError):
        issue(alice)
    emulator.faults.clear()

    result = lifecycle.zone_reconcile(zone_id=ZONE)

    certificate = Certificate.objects.get()
    assert result.adopted == [certificate.pk]
    assert certificate.status == Certificate.Status.ACTIVE
    assert certificate.fingerprint_sha256
    assert result.unknown == 0


def test_reconciliation_records_revocations_made_outside_the_portal_and_unknown_certificates(emulator, alice):
    certificate = issue(alice)
    client = get_cloudflare_client()
    client.revoke_client_certificate(ZONE, certificate.cloudflare_id)  # in Cloudflare's dashboard, say
    stranger = client.create_client_certificate(ZONE, csr=make_csr("made-in-dashboard"), validity_days=30)

    result = lifecycle.zone_reconcile(zone_id=ZONE)

    certificate.refresh_from_db()
    assert certificate.status == Certificate.Status.PENDING_REVOCATION
    assert [(c.old, c.new) for c in result.drifted] == [("active", "pending_revocation")]
    unknown = UnknownCertificate.objects.get()
    assert unknown.cloudflare_id == stranger.id
    assert unknown.common_name == "made-in-dashboard"


def test_reconciliation_marks_expired_certificates(emulator, alice):
    certificate = issue(alice)
    Certificate.objects.filter(pk=certificate.pk).update(expires_on=timezone.now() - timedelta(minutes=1))

    result = lifecycle.zone_reconcile(zone_id=ZONE)

    assert result.expired == [certificate.pk]
    certificate.refresh_from_db()
    assert certificate.status == Certificate.Status.EXPIRED
    assert lifecycle.zone_reconcile(zone_id=ZONE).drifted == [], "Cloudflare's 'active' does not undo 'expired'"


def test_a_stuck_issuance_is_settled_by_reconciliation(emulator, alice):
    certificate = issue(alice)
    Certificate.objects.filter(pk=certificate.pk).update(
        status=Certificate.Status.ISSUING, cloudflare_id="", updated_at=timezone.now() - timedelta(minutes=10)
    )

    lifecycle.zone_reconcile(zone_id=ZONE)

    certificate.refresh_from_db()
    assert certificate.status == Certificate.Status.ACTIVE
    assert certificate.cloudflare_id


def test_expiry_reminders_are_sent_once_per_threshold(emulator, alice, settings):
    settings.CERTIFICATE_EXPIRY_REMINDER_DAYS = [30, 7]
    certificate = issue(alice)
    now = timezone.now()
    Certificate.objects.filter(pk=certificate.pk).update(expires_on=now + timedelta(days=20))

    assert lifecycle.expiry_reminders_send(now=now) == 1
    assert lifecycle.expiry_reminders_send(now=now) == 0
    assert lifecycle.expiry_reminders_send(now=now + timedelta(days=14)) == 1  # now inside 7 days
    assert lifecycle.expiry_reminders_send(now=now + timedelta(days=15)) == 0
    assert len(mail.outbox) == 2
    assert "expires in" in mail.outbox[0].subject


def test_reconciliation_does_not_undo_a_revocation_made_while_it_lists(emulator, alice, monkeypatch):
    certificate = issue(alice)
    real_client = lifecycle.get_cloudflare_client()

    class RevokeDuringListing:
        def __getattr__(self, name):
            return getattr(real_client, name)

        def list_client_certificates_page(self, zone_id, **kwargs):
            page = real_client.list_client_certificates_page(zone_id, **kwargs)  # still says active
            if Certificate.objects.get(pk=certificate.pk).status == Certificate.Status.ACTIVE:
                services.certificate_revoke(certificate=certificate, origin=services.Origin(actor=alice))
            return page

    monkeypatch.setattr(lifecycle, "get_cloudflare_client", lambda: RevokeDuringListing())

    result = lifecycle.zone_reconcile(zone_id=ZONE)

    certificate.refresh_from_db()
    assert certificate.status == Certificate.Status.PENDING_REVOCATION
    assert result.drifted == []


def test_a_failing_email_does_not_stop_polling(emulator, alice, bob, monkeypatch, django_capture_on_commit_callbacks):
    from certificates.services import notifications

    first, second = issue(alice), issue(bob)
    for certificate in (first, second):
        services.certificate_revoke(certificate=certificate, origin=services.Origin(actor=None))
    emulator.clock.advance(31)
    mail.outbox.clear()
    real_send_mail = notifications.send_mail

    def refuse_bob(subject, body, sender, recipients):
        if recipients == ["bob@example.com"]:
            raise ConnectionRefusedError("the SMTP server is down")
        return real_send_mail(subject, body, sender, recipients)

    monkeypatch.setattr(notifications, "send_mail", refuse_bob)

    # The email task runs inline here, and its retry of bob's email is raised to the queueing, which logs it.
    with django_capture_on_commit_callbacks(execute=True):
        result = lifecycle.certificates_poll(zone_id=ZONE)

    assert len(result.changes) == 2
    assert set(Certificate.objects.values_list("status", flat=True)) == {Certificate.Status.REVOKED}
    assert AuditEvent.objects.filter(action=AuditEvent.Action.REVOKED, detail={"source": "polled"}).count() == 2
    assert [m.to for m in mail.outbox] == [["alice@example.com"]]


def test_a_mail_server_that_stays_down_costs_the_emails_not_the_pass(
    emulator, alice, monkeypatch, django_capture_on_commit_callbacks
):
    from certificates.services import notifications

    certificate = issue(alice)
    services.certificate_revoke(certificate=certificate, origin=services.Origin(actor=None))
    emulator.clock.advance(31)

    def refuse(*args, **kwargs):
        raise ConnectionRefusedError("the SMTP server is down")

    monkeypatch.setattr(notifications, "send_mail", refuse)

    with django_capture_on_commit_callbacks(execute=True):
        result = lifecycle.certificates_poll(zone_id=ZONE)

    assert [(c.old, c.new) for c in result.changes] == [("pending_revocation", "revoked")]
    assert certificate.events.filter(action=AuditEvent.Action.REVOKED).count() == 1
