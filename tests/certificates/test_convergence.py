"""Convergence after faults (issue 9, points 6 to 8): late writes are overwritten, stuck rows settle within a
minute, tasks retry only what repeating can fix, one HTTP session per process."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from unittest import mock

import pytest
from celery.exceptions import Retry
from django.core.cache import cache
from django.utils import timezone

from certificates import cloudflare_client, enqueue, services, tasks
from certificates.cloudflare_client import get_cloudflare_client
from certificates.firewall.sync import firewall_sync
from certificates.models import AllowlistEntry, Certificate
from certificates.services import lifecycle
from cloudflare.errors import AuthenticationError, ErrorDetail, RateLimitedError, ServerError
from cloudflare.models import RuleSpec
from tests.support.pki import policy_csr

ZONE = "0" * 32
ROOT = Path(__file__).resolve().parents[2]
FOREIGN = RuleSpec(ref="security_team_geo", expression='ip.src.country in {"KP"}', description="not ours")


@pytest.fixture(autouse=True)
def firewall_settings(settings):
    settings.PORTAL_API_HOSTNAMES = ["api.example.com"]
    settings.CLOUDFLARE_CUSTOM_RULES_LIMIT = 20
    cache.clear()


def issue(user, name="laptop"):
    return services.certificate_issue(
        user=user, csr=policy_csr(user), validity_days=365, name=name, origin=services.Origin(actor=user)
    )


def binding_rule():
    rules = get_cloudflare_client().get_entrypoint(ZONE).rules
    (rule,) = [rule for rule in rules if rule.ref.startswith("mtls_portal_bind")]
    return rule


# -- point 6: a write that lands late is overwritten -------------------------------------------------------------


def test_a_patch_that_lands_after_a_newer_one_is_overwritten_by_the_follow_up(
    emulator, alice, settings, django_capture_on_commit_callbacks
):
    settings.CLOUDFLARE_TIMEOUT = 1
    get_cloudflare_client().create_entrypoint(ZONE, rules=[FOREIGN])
    issue(alice)
    AllowlistEntry.objects.create(owner=alice, network="93.184.216.0/24")
    firewall_sync(zone_id=ZONE)
    # The old network's PATCH hangs past the read timeout and is repeated (PATCH is safe to repeat)...
    AllowlistEntry.objects.filter(owner=alice).update(network="198.51.100.0/24")
    emulator.faults.latency(5, method="PATCH")
    with django_capture_on_commit_callbacks(execute=False) as follow_ups:
        firewall_sync(zone_id=ZONE)
    stale = binding_rule()
    # ... the user changes networks again and a newer sync writes them ...
    AllowlistEntry.objects.filter(owner=alice).update(network="203.0.113.0/24")
    firewall_sync(zone_id=ZONE)
    # ... then Cloudflare commits the hung PATCH on top of it: the old rule is back.
    client = get_cloudflare_client()
    entrypoint = client.get_entrypoint(ZONE)
    client.update_rule(ZONE, entrypoint.id, stale.id, RuleSpec(ref=stale.ref, expression=stale.expression))
    assert "198.51.100.0/24" in binding_rule().expression

    with mock.patch.object(tasks.sync_firewall, "apply_async", wraps=tasks.sync_firewall.apply_async) as queued:
        for callback in follow_ups:
            callback()

    queued.assert_called_once_with(args=(ZONE,), kwargs={"follow_up": 1}, countdown=settings.FIREWALL_FOLLOW_UP_SECONDS)
    assert "203.0.113.0/24" in binding_rule().expression
    assert "198.51.100.0/24" not in binding_rule().expression
    assert firewall_sync(zone_id=ZONE).is_empty


def test_an_ambiguous_add_queues_a_follow_up(emulator, alice, settings, django_capture_on_commit_callbacks):
    from cloudflare.errors import AmbiguousRequestError

    settings.CLOUDFLARE_TIMEOUT = 1
    get_cloudflare_client().create_entrypoint(ZONE, rules=[FOREIGN])
    issue(alice)
    emulator.faults.latency(5, method="POST", path="rules")

    with (
        mock.patch.object(tasks.sync_firewall, "apply_async") as queued,
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(AmbiguousRequestError),
    ):
        firewall_sync(zone_id=ZONE)

    queued.assert_called_once_with(args=(ZONE,), kwargs={"follow_up": 1}, countdown=settings.FIREWALL_FOLLOW_UP_SECONDS)


def test_a_sync_whose_writes_all_answered_queues_no_follow_up(emulator, alice, django_capture_on_commit_callbacks):
    issue(alice)
    with (
        mock.patch.object(tasks.sync_firewall, "apply_async") as queued,
        django_capture_on_commit_callbacks(execute=True),
    ):
        firewall_sync(zone_id=ZONE)
    queued.assert_not_called()


def test_follow_ups_stop_after_a_few_in_a_row(emulator, alice, settings, django_capture_on_commit_callbacks):
    settings.CLOUDFLARE_TIMEOUT = 1
    get_cloudflare_client().create_entrypoint(ZONE, rules=[FOREIGN])
    issue(alice)
    AllowlistEntry.objects.create(owner=alice, network="93.184.216.0/24")
    firewall_sync(zone_id=ZONE)

    queued_for = []
    for depth in range(enqueue.FOLLOW_UPS_AT_MOST + 1):
        cache.clear()
        AllowlistEntry.objects.filter(owner=alice).update(network=f"10.{depth}.0.0/16")
        emulator.faults.latency(5, method="PATCH")  # every sync meets a hung write
        with (
            mock.patch.object(tasks.sync_firewall, "apply_async") as queued,
            django_capture_on_commit_callbacks(execute=True),
        ):
            firewall_sync(zone_id=ZONE, follow_up=depth)
        queued_for.append([call.kwargs["kwargs"]["follow_up"] for call in queued.call_args_list])

    assert queued_for == [[1], [2], [3], []], "the chain ends; the periodic sync goes on"


# -- point 7: convergence within a minute --------------------------------------------------------------------------


def settings_in_a_fresh_process(tmp_path, **environment: str) -> list[str]:
    names = (
        "SWEEP_STUCK_SECONDS",
        "CERTIFICATE_STUCK_ISSUING_SECONDS",
        "CERTIFICATE_UNCONFIRMED_GRACE_SECONDS",
        "FIREWALL_FOLLOW_UP_SECONDS",
    )
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        f"print(*[getattr(s, n) for n in {names!r}], s.CELERY_BEAT_SCHEDULE['sweep-stuck']['schedule'])"
    )
    env = {k: v for k, v in os.environ.items() if k not in names}
    env.update({"PORTAL_VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "portal.settings", "DEBUG": "true"})
    env.update(environment)
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_convergence_periods_are_settings_with_defaults_under_a_minute(tmp_path):
    assert settings_in_a_fresh_process(tmp_path) == ["30.0", "60.0", "60.0", "30.0", "30.0"]
    changed = settings_in_a_fresh_process(
        tmp_path,
        SWEEP_STUCK_SECONDS="12",
        CERTIFICATE_STUCK_ISSUING_SECONDS="45",
        CERTIFICATE_UNCONFIRMED_GRACE_SECONDS="90",
        FIREWALL_FOLLOW_UP_SECONDS="20",
    )
    assert changed == ["12.0", "45.0", "90.0", "20.0", "12.0"], "beat sweeps at SWEEP_STUCK_SECONDS"


def test_an_issuance_stuck_a_minute_is_swept(emulator, alice, settings):
    settings.CERTIFICATE_STUCK_ISSUING_SECONDS = 60
    certificate = issue(alice)
    Certificate.objects.filter(pk=certificate.pk).update(
        status=Certificate.Status.ISSUING, cloudflare_id="", updated_at=timezone.now() - timedelta(seconds=50)
    )
    assert lifecycle.certificates_mark_stuck(now=timezone.now()) == []

    Certificate.objects.filter(pk=certificate.pk).update(updated_at=timezone.now() - timedelta(seconds=61))
    assert lifecycle.certificates_mark_stuck(now=timezone.now()) == [certificate.pk]


def test_an_unconfirmed_create_fails_once_the_grace_setting_has_passed(emulator, alice, settings):
    settings.CERTIFICATE_UNCONFIRMED_GRACE_SECONDS = 60
    emulator.faults.server_error(times=1, status=502, html=True, method="POST")
    with pytest.raises(services.CloudflareUnavailableError):
        issue(alice)
    certificate = Certificate.objects.get()
    Certificate.objects.filter(pk=certificate.pk).update(updated_at=timezone.now() - timedelta(seconds=61))

    settled = services.certificate_reconcile_unconfirmed(certificate=certificate, origin=services.Origin(actor=None))

    assert settled.status == Certificate.Status.FAILED


def test_an_ambiguous_create_queues_a_reconciliation_within_seconds(
    emulator, alice, django_capture_on_commit_callbacks
):
    emulator.faults.server_error(times=1, status=502, html=True, method="POST")
    with (
        mock.patch.object(tasks.reconcile_certificate, "apply_async") as queued,
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(services.CloudflareUnavailableError),
    ):
        issue(alice)
    (call,) = queued.call_args_list
    assert call.kwargs["countdown"] <= 10


def test_a_row_not_listed_yet_is_checked_again_just_after_its_grace(emulator, alice, settings):
    settings.CERTIFICATE_UNCONFIRMED_GRACE_SECONDS = 60
    emulator.faults.server_error(times=1, status=502, html=True, method="POST")
    with pytest.raises(services.CloudflareUnavailableError):
        issue(alice)
    certificate = Certificate.objects.get()
    Certificate.objects.filter(pk=certificate.pk).update(updated_at=timezone.now() - timedelta(seconds=20))

    with (
        mock.patch.object(tasks, "retry_later", side_effect=RuntimeError("retried")) as retry_later,
        pytest.raises(RuntimeError, match="retried"),
    ):
        tasks.reconcile_certificate.run(certificate.pk)

    countdown = retry_later.call_args.kwargs["countdown"]
    assert 40 <= countdown <= 42, "60 s of grace, 20 s gone: look again right after the other 40"


# -- point 8: tasks retry only what repeating can fix ---------------------------------------------------------------


def refused() -> AuthenticationError:
    return AuthenticationError(403, (ErrorDetail(9109, "Invalid access token"),))


def test_a_sync_is_not_retried_for_an_error_repeating_cannot_fix(emulator):
    with (
        mock.patch("certificates.firewall.sync.firewall_sync", side_effect=refused()) as sync,
        pytest.raises(AuthenticationError),
    ):
        tasks.sync_firewall.apply(args=[ZONE]).get()
    assert sync.call_count == 1


def test_a_sync_is_retried_for_a_transient_error(emulator):
    with (
        mock.patch("certificates.firewall.sync.firewall_sync", side_effect=ServerError(503)),
        pytest.raises(Retry, match="HTTP 503"),
    ):
        tasks.sync_firewall.apply(args=[ZONE]).get()


def test_reconciling_one_certificate_is_not_retried_for_a_refused_token(emulator, alice):
    emulator.faults.server_error(times=1, status=502, html=True, method="POST")
    with pytest.raises(services.CloudflareUnavailableError):
        issue(alice)
    certificate = Certificate.objects.get()

    with (
        mock.patch.object(tasks, "certificate_reconcile_unconfirmed", side_effect=refused()) as reconcile,
        pytest.raises(AuthenticationError),
    ):
        tasks.reconcile_certificate.apply(args=[certificate.pk]).get()

    assert reconcile.call_count == 1
    assert "Invalid access token" in Certificate.objects.get().last_error


@pytest.mark.parametrize(
    ("task", "target"),
    [
        (tasks.poll_certificates, "certificates.services.lifecycle.certificates_poll"),
        (tasks.reconcile_zone, "certificates.services.lifecycle.zone_reconcile"),
    ],
    ids=["poll", "reconcile"],
)
def test_a_periodic_task_does_not_retry(db, emulator, task, target):
    with mock.patch(target, side_effect=ServerError(503)) as work, pytest.raises(ServerError):
        task.apply().get()
    assert work.call_count == 1, "the next period is the retry"


def test_no_periodic_task_retries_by_itself(settings):
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        _module, name = entry["task"].rsplit(".", 1)
        task = getattr(tasks, name)
        assert not getattr(task, "autoretry_for", ()), name


def test_backoff_grows_with_jitter_under_a_cap_and_never_before_retry_after():
    waits = [tasks.backoff_seconds(retries) for retries in range(10)]
    assert all(tasks.BACKOFF_SECONDS / 2 <= wait <= tasks.BACKOFF_MAX_SECONDS for wait in waits)
    assert waits[3] > tasks.backoff_seconds(0)
    assert tasks.backoff_seconds(0, RateLimitedError(429, retry_after=45)) >= 45


# -- point 8: one HTTP session per process ---------------------------------------------------------------------------


def test_clients_share_one_http_session(settings, monkeypatch):
    from cloudflare.budget import LocalBudget

    settings.CLOUDFLARE_EMULATED = False
    settings.CLOUDFLARE_API_TOKEN = "t"
    settings.CLOUDFLARE_ZONE_ID = ZONE
    monkeypatch.setattr(cloudflare_client, "get_call_budget", lambda: LocalBudget())

    first, second = get_cloudflare_client(), get_cloudflare_client(wait_for_budget=False)

    assert first.session is second.session


def test_clients_of_one_emulator_share_one_session(emulator):
    assert get_cloudflare_client().session is get_cloudflare_client().session


# -- point 8: the fingerprint is the certificate's own ----------------------------------------------------------------


def test_an_issuance_whose_reported_fingerprint_is_not_the_certificates_is_refused(emulator, alice, monkeypatch):
    from cloudflare_emulator import pki

    monkeypatch.setattr(pki, "fingerprint_sha256", lambda certificate: "ab" * 32)

    with pytest.raises(services.ServiceError, match=r"not the (ab)+ it reports"):
        issue(alice)

    certificate = Certificate.objects.get()
    assert certificate.status == Certificate.Status.FAILED
    assert certificate.fingerprint_sha256 == ""
