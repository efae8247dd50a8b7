"""Celery tasks: enqueued after commit, debounced, retried with the attempt recorded, swept when stuck."""

from __future__ import annotations

import smtplib
from datetime import timedelta
from unittest import mock

import pytest
from django.core.cache import cache
from django.utils import timezone

from certificates import services, tasks
from certificates.cloudflare_client import get_cloudflare_client
from certificates.models import AllowlistEntry, Certificate
from cloudflare.errors import ServerError
from tests.support.pki import policy_csr

ZONE = "0" * 32


@pytest.fixture(autouse=True)
def clean_cache():
    cache.clear()


def issue(user):
    return services.certificate_issue(
        user=user, csr=policy_csr(user), validity_days=365, name="box", origin=services.Origin(actor=user)
    )


def test_revocation_queues_one_firewall_sync_after_commit(emulator, alice, django_capture_on_commit_callbacks):
    certificate = issue(alice)
    with mock.patch.object(tasks.sync_firewall, "apply_async") as apply_async:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            services.certificate_revoke(certificate=certificate, origin=services.Origin(actor=alice))
        apply_async.assert_not_called()  # nothing leaves before the commit
        for callback in callbacks:
            callback()
    apply_async.assert_called_once_with(args=(ZONE,), countdown=5)


def test_triggers_within_the_debounce_window_collapse(emulator, alice, django_capture_on_commit_callbacks):
    with mock.patch.object(tasks.sync_firewall, "apply_async") as apply_async:
        for networks in (["8.8.8.0/24"], ["8.8.4.0/24"], []):
            with django_capture_on_commit_callbacks(execute=True):
                services.allowlist_set(user=alice, networks=networks, origin=services.Origin(actor=alice))
    assert apply_async.call_count == 1


def test_the_sync_task_pushes_the_rules(emulator, alice, settings):
    settings.PORTAL_API_HOSTNAMES = ["api.example.com"]
    settings.CLOUDFLARE_CUSTOM_RULES_LIMIT = 20
    issue(alice)
    AllowlistEntry.objects.create(owner=alice, network="8.8.8.0/24")

    result = tasks.sync_firewall.apply(args=[ZONE]).get()

    assert result["added"] >= 2
    refs = [rule.ref for rule in get_cloudflare_client().get_entrypoint(ZONE).rules]
    assert "mtls_portal_base" in refs


def test_reconcile_certificate_records_attempts_and_retries_transient_errors(emulator, alice):
    emulator.faults.create_commits_then_fails(mode="timeout")
    emulator.faults.server_error(times=100, status=503, method="GET")
    with pytest.raises(services.CloudflareUnavailableError):
        issue(alice)
    certificate = Certificate.objects.get()

    # Called directly, the task re-raises what a worker would retry with backoff.
    with pytest.raises(ServerError):
        tasks.reconcile_certificate.run(certificate.pk)

    certificate.refresh_from_db()
    assert certificate.attempts == 1
    assert certificate.last_attempt_at is not None
    assert "HTTP 503" in certificate.last_error
    assert certificate.status == Certificate.Status.UNCONFIRMED

    emulator.faults.clear()
    assert tasks.reconcile_certificate.apply(args=[certificate.pk]).get() == "active"
    assert Certificate.objects.get().status == Certificate.Status.ACTIVE


def test_the_sweeper_requeues_rows_stuck_in_flight(emulator, alice):
    certificate = issue(alice)
    Certificate.objects.filter(pk=certificate.pk).update(
        status=Certificate.Status.ISSUING, cloudflare_id="", updated_at=timezone.now() - timedelta(minutes=6)
    )
    with mock.patch.object(tasks.reconcile_certificate, "delay") as delay:
        assert tasks.sweep_stuck.apply().get() == 1
    delay.assert_called_once_with(certificate.pk)
    assert Certificate.objects.get(pk=certificate.pk).status == Certificate.Status.UNCONFIRMED


def test_poll_task_queues_a_sync_only_when_something_changed(emulator, alice):
    certificate = issue(alice)
    with mock.patch.object(tasks, "request_firewall_sync") as request:
        tasks.poll_certificates.apply().get()
        request.assert_not_called()
        services.certificate_revoke(certificate=certificate, origin=services.Origin(actor=alice))
        request.reset_mock()
        emulator.clock.advance(31)
        changed = tasks.poll_certificates.apply().get()
    assert changed[ZONE] == [(certificate.pk, "pending_revocation", "revoked")]
    request.assert_called_once_with(ZONE)


def test_the_beat_schedule_runs_every_periodic_task(settings):
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert scheduled == {
        "certificates.tasks.poll_certificates",
        "certificates.tasks.reconcile_zone",
        "certificates.tasks.sync_all_firewalls",
        "certificates.tasks.refresh_crls",
        "certificates.tasks.sweep_stuck",
        "certificates.tasks.send_expiry_reminders",
        "certificates.tasks.retire_authorities",
    }
    assert settings.CELERY_BEAT_SCHEDULE["poll-certificates"]["schedule"] == settings.CERTIFICATE_POLL_SECONDS


def test_notify_owners_sends_again_only_the_emails_the_mail_server_refused(emulator, alice, bob, monkeypatch):
    from celery.exceptions import Retry
    from django.core import mail

    from certificates.models import AuditEvent
    from certificates.services import notifications

    mine, bobs = issue(alice), issue(bob)
    notices = [(mine.pk, AuditEvent.Action.REVOKED), (bobs.pk, AuditEvent.Action.REACTIVATED)]
    real_send_mail = notifications.send_mail

    def smtp_down_for_bob(subject, body, sender, recipients):
        if recipients == ["bob@example.com"]:
            raise smtplib.SMTPServerDisconnected("connection unexpectedly closed")
        return real_send_mail(subject, body, sender, recipients)

    monkeypatch.setattr(notifications, "send_mail", smtp_down_for_bob)
    mail.outbox.clear()

    with pytest.raises(Retry) as retry:
        tasks.notify_owners.apply(args=(notices,))

    assert [m.to for m in mail.outbox] == [["alice@example.com"]]
    assert "revoked" in mail.outbox[0].subject
    assert retry.value.sig.args == ([(bobs.pk, AuditEvent.Action.REACTIVATED)],)
    monkeypatch.setattr(notifications, "send_mail", real_send_mail)  # the mail server is back

    retry.value.sig.apply()

    assert [m.to for m in mail.outbox] == [["alice@example.com"], ["bob@example.com"]]
    assert "reactivated" in mail.outbox[1].subject


def test_notify_owners_does_not_retry_a_bug(emulator, alice, monkeypatch):
    from certificates.models import AuditEvent
    from certificates.services import notifications

    certificate = issue(alice)
    monkeypatch.setattr(notifications, "render_to_string", mock.Mock(side_effect=KeyError("template")))

    with pytest.raises(KeyError):
        tasks.notify_owners.apply(args=([(certificate.pk, AuditEvent.Action.REVOKED)],))
