"""/healthz, /readyz and `manage.py readiness`: what each check watches, its thresholds, and what the answer never
shows; and the task runs Celery's signals record, which the checks read."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from unittest import mock

import pytest
from celery.signals import after_task_publish, beat_init
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, OperationalError
from django.urls import reverse
from django.utils import timezone
from kombu import Connection

from certificates import tasks
from certificates.cloudflare_client import get_zone_id
from certificates.models import FirewallState, TaskRun
from portal import celery as portal_celery
from portal import health
from portal.management.commands.readiness import probe_host

POLL = health.POLL_TASK

pytestmark = pytest.mark.django_db


def record_poll(
    *, queued: float | None = 0, started: float | None = 0, succeeded: float | None = 0, now: datetime | None = None
) -> datetime:
    """The poll's TaskRun as if beat queued it, a worker started it and it succeeded that many seconds ago (None:
    never); returns the `now` it counted from."""
    now = now or timezone.now()

    def ago(seconds: float | None) -> datetime | None:
        return None if seconds is None else now - timedelta(seconds=seconds)

    TaskRun.objects.update_or_create(
        task=POLL,
        defaults={"last_queued_at": ago(queued), "last_started_at": ago(started), "last_succeeded_at": ago(succeeded)},
    )
    return now


def beat_and_worker_alive(*, seconds_ago: float = 0) -> datetime:
    return record_poll(queued=seconds_ago, started=seconds_ago, succeeded=seconds_ago)


def zone_synced(now: datetime, *, seconds_ago: float = 0, error: str = "") -> None:
    FirewallState.objects.update_or_create(
        zone_id=get_zone_id(),
        defaults={"last_synced_at": now - timedelta(seconds=seconds_ago), "last_error": error},
    )


def readyz(client, scope: str | None = None):
    return client.get(reverse("readyz"), {"for": scope} if scope else {})


# -- /healthz and /readyz -------------------------------------------------------------------------------------------


def test_healthz_says_only_that_the_process_answers(client):
    response = client.get(reverse("healthz"))

    assert (response.status_code, response.json()) == (200, {"status": "ok"})
    assert "no-cache" in response["Cache-Control"]


def test_readyz_is_200_when_every_check_passes(client):
    zone_synced(beat_and_worker_alive())

    response = readyz(client)

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["failing"] == []
    assert set(body["checks"]) == {"database", "cache", "broker", "beat", "worker", "poll", "sync"}
    assert body["checks"]["poll"] == {"status": "ok", "age_seconds": 0, "max_age_seconds": 180}
    assert "no-cache" in response["Cache-Control"]


def test_a_stopped_worker_turns_readyz_red_once_the_poll_is_older_than_the_threshold(client, settings):
    limit = settings.READY_POLL_MAX_AGE_SECONDS
    # Beat keeps queueing polls nobody starts.
    zone_synced(record_poll(queued=1, started=limit, succeeded=limit))
    assert readyz(client).status_code == 200  # at the threshold: a slow pass, not yet a dead worker

    zone_synced(record_poll(queued=1, started=limit + 1, succeeded=limit + 1))
    response = readyz(client)

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "failing"
    assert body["failing"] == ["worker", "poll"]
    assert body["checks"]["worker"] == {"status": "failing", "age_seconds": limit + 1, "max_age_seconds": limit}
    assert body["checks"]["beat"]["status"] == "ok"


def test_a_poll_that_keeps_failing_is_red_while_the_worker_is_not(client, settings):
    limit = settings.READY_POLL_MAX_AGE_SECONDS
    zone_synced(record_poll(queued=1, started=1, succeeded=limit + 60))

    body = readyz(client).json()

    assert body["failing"] == ["poll"]


def test_a_stopped_beat_is_red_and_the_idle_worker_is_not_blamed(client, settings):
    old = settings.READY_BEAT_MAX_AGE_SECONDS + settings.READY_POLL_MAX_AGE_SECONDS
    # Beat's last poll was started by a worker, which has had nothing to do since.
    zone_synced(record_poll(queued=old + 1, started=old, succeeded=old))

    body = readyz(client).json()

    assert body["failing"] == ["beat", "poll"]
    assert body["checks"]["worker"]["status"] == "ok"


def test_a_sync_older_than_its_threshold_or_never_run_is_red(client, settings):
    now = beat_and_worker_alive()
    zone_synced(now, seconds_ago=settings.READY_SYNC_MAX_AGE_SECONDS + 1, error="APIError: 500")
    assert readyz(client).json()["failing"] == ["sync"]

    FirewallState.objects.all().delete()
    body = readyz(client).json()
    assert body["failing"] == ["sync"]
    assert body["checks"]["sync"]["age_seconds"] is None


def test_nothing_ever_ran_fails_beat_poll_and_sync(client):
    assert readyz(client).json()["failing"] == ["beat", "poll", "sync"]


def test_thresholds_come_from_the_settings(client, settings):
    settings.READY_POLL_MAX_AGE_SECONDS = 30
    zone_synced(record_poll(queued=1, started=31, succeeded=31))

    assert readyz(client).json()["failing"] == ["worker", "poll"]


def test_default_thresholds_follow_the_schedule(settings):
    # Several missed periods before a check fails, with a floor for a slow pass.
    assert settings.READY_POLL_MAX_AGE_SECONDS >= 6 * settings.CERTIFICATE_POLL_SECONDS
    assert settings.READY_BEAT_MAX_AGE_SECONDS >= 4 * settings.CERTIFICATE_POLL_SECONDS
    assert settings.READY_SYNC_MAX_AGE_SECONDS >= 2 * settings.FIREWALL_SYNC_SECONDS


@pytest.mark.parametrize(
    ("scope", "checks"),
    [
        ("web", {"database", "cache", "broker"}),
        ("worker", {"database", "broker", "worker"}),
        ("beat", {"database", "broker", "beat"}),
    ],
)
def test_a_scope_runs_only_its_own_checks(client, scope, checks):
    # Nothing ever ran: beat, poll and sync would fail, but each scope asks only what its process is for.
    response = readyz(client, scope)

    assert set(response.json()["checks"]) == checks
    assert response.status_code == (503 if scope == "beat" else 200)


def test_an_unknown_scope_is_refused(client):
    response = readyz(client, "everything")

    assert response.status_code == 400
    assert "web" in response.json()["detail"]


SECRET_URL = "postgres://portal:hunter2-secret@db.internal:5432/portal"


def test_an_unreachable_database_is_named_without_its_error(client, caplog):
    broken = mock.Mock(side_effect=OperationalError(f"could not connect to {SECRET_URL}"))
    with mock.patch.object(health.connection, "cursor", broken), caplog.at_level(logging.WARNING):
        response = readyz(client, "web")

    assert response.status_code == 503
    assert response.json()["failing"] == ["database"]
    assert b"hunter2" not in response.content
    assert b"db.internal" not in response.content
    assert "database is unreachable" in caplog.text  # the reason is for the log


def test_an_unreachable_cache_is_named_without_its_error(client):
    with mock.patch.object(health.cache, "get", side_effect=ConnectionError(f"redis://:hunter2@{SECRET_URL}")):
        response = readyz(client, "web")

    assert response.json()["failing"] == ["cache"]
    assert b"hunter2" not in response.content


def test_an_unreachable_broker_fails_within_its_timeout(client):
    # Nothing listens on port 1: kombu's own connection error, as with a Redis that is down.
    refused = Connection("redis://:hunter2@127.0.0.1:1/0")
    with mock.patch.object(health.app, "connection_for_write", return_value=refused):
        response = readyz(client, "web")

    assert response.json()["failing"] == ["broker"]
    assert b"hunter2" not in response.content


def test_readyz_needs_no_session_and_lets_no_staff_session_be_sent_elsewhere(client, charlie):
    client.force_login(charlie)  # staff without this session's second factor: other pages redirect

    assert readyz(client, "web").status_code == 200


def test_readyz_and_metrics_are_exempt_from_the_https_redirect_as_healthz_is(settings):
    import re

    for path in ("healthz", "readyz", "metrics"):
        assert any(re.search(pattern, path) for pattern in settings.SECURE_REDIRECT_EXEMPT), path
    assert not any(re.search(pattern, "admin/") for pattern in settings.SECURE_REDIRECT_EXEMPT)


def test_the_poll_task_readiness_watches_is_the_one_beat_runs(settings):
    assert tasks.poll_certificates.name == POLL
    assert POLL in {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}


# -- manage.py readiness --------------------------------------------------------------------------------------------


def test_the_command_exits_zero_and_prints_the_answer_when_ready(capsys):
    zone_synced(beat_and_worker_alive())

    call_command("readiness")

    assert '"status": "ok"' in capsys.readouterr().out


def test_the_command_fails_naming_the_failing_checks(capsys, settings):
    zone_synced(record_poll(queued=1, started=9999, succeeded=9999))

    with pytest.raises(CommandError, match="not ready: worker, poll") as refusal:
        call_command("readiness")

    assert refusal.value.returncode == 1
    assert '"failing": ["worker", "poll"]' in capsys.readouterr().out


@pytest.mark.django_db(transaction=True)
def test_the_command_asks_a_web_server_with_a_host_it_accepts(live_server, capsys):
    address = live_server.url.removeprefix("http://")

    call_command("readiness", "--for", "web", "--http", address)
    assert '"status": "ok"' in capsys.readouterr().out

    with pytest.raises(CommandError, match="not ready: beat, poll, sync"):
        call_command("readiness", "--http", address)


def test_the_command_fails_when_no_web_server_answers(capsys):
    with pytest.raises(CommandError, match="no answer"):
        call_command("readiness", "--for", "web", "--http", "127.0.0.1:1")

    assert '"error": "URLError"' in capsys.readouterr().out


@pytest.mark.parametrize(
    ("allowed", "host"),
    [
        (["portal.example.com", "localhost"], "portal.example.com"),
        ([".example.com"], "example.com"),
        (["*"], "localhost"),
    ],
)
def test_the_probe_sends_a_host_allowed_hosts_accepts(settings, allowed, host):
    settings.ALLOWED_HOSTS = allowed

    assert probe_host() == host


# -- task runs, recorded by portal/celery.py's receivers -------------------------------------------------------------


def test_a_task_run_records_its_start_success_and_count():
    before = timezone.now()

    tasks.send_expiry_reminders.delay()
    tasks.send_expiry_reminders.delay()

    run = TaskRun.objects.get(task=tasks.send_expiry_reminders.name)
    assert (run.succeeded, run.failed) == (2, 0)
    assert before <= run.last_started_at <= run.last_succeeded_at
    assert run.last_queued_at is None  # queued by this process, not by beat


def test_a_failed_run_records_the_failure_and_a_short_summary():
    failure = RuntimeError("mail server said no" * 50)
    with mock.patch.object(tasks.lifecycle, "expiry_reminders_send", side_effect=failure):
        # As a worker runs it: the failure is handled (and signalled), not raised into the caller.
        result = tasks.send_expiry_reminders.apply(throw=False)

    assert result.failed()

    run = TaskRun.objects.get(task=tasks.send_expiry_reminders.name)
    assert (run.succeeded, run.failed) == (0, 1)
    assert run.last_failed_at is not None
    assert run.last_succeeded_at is None
    assert run.last_error.startswith("RuntimeError: mail server said no")
    assert len(run.last_error) == 500


def test_only_beat_records_that_it_queued_a_task(monkeypatch):
    def published() -> None:
        after_task_publish.send(sender=POLL, headers={}, body=(), exchange="", routing_key="celery")

    published()  # a web request or a worker queueing it
    assert not TaskRun.objects.filter(task=POLL, last_queued_at__isnull=False).exists()

    monkeypatch.setitem(portal_celery._this_process, "is_beat", False)  # restored after the test
    beat_init.send(sender=None)
    published()

    assert TaskRun.objects.get(task=POLL).last_queued_at is not None


def test_a_task_whose_run_cannot_be_recorded_still_runs(caplog):
    with (
        mock.patch("certificates.services.task_runs._record", side_effect=DatabaseError("database is gone")),
        caplog.at_level(logging.WARNING),
    ):
        result = tasks.send_expiry_reminders.delay()

    assert result.successful()
    assert "could not record that task certificates.tasks.send_expiry_reminders started" in caplog.text
