"""The admin index's overview of the zone (issue #13, point 4): the figures staff act on, each linking to the admin
list behind it, and a "sync now" button."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from certificates import enqueue
from certificates.models import Certificate, FirewallState, TaskRun, UnknownCertificate, Zone
from certificates.services.task_runs import task_run_failed, task_run_succeeded
from tests.support.accounts import signed_in
from tests.support.listing import certificate_rows
from tests.support.portal_ca import trusted_portal_ca

ZONE = "0" * 32
INDEX = reverse("admin:index")
SYNC_NOW = reverse("certificates:firewall_sync_now")


@pytest.fixture
def staff(charlie, emulator):
    return signed_in(charlie)


def overview(client) -> str:
    content = client.get(INDEX).content.decode()
    found = re.search(r'<section class="module zone-overview".*?</section>', content, re.S)
    assert found, "the admin index shows no zone overview"
    return re.sub(r"\s+", " ", found.group(0))


def figure(html: str, testid: str) -> str:
    found = re.search(rf'<div data-testid="{testid}">(.*?)</div>', html)
    assert found, testid
    return re.sub(r"<[^>]+>", "", found.group(1))


def make_rows(owner, statuses_and_expiry: list[tuple[str, timedelta | None]]) -> None:
    now = timezone.now()
    rows = certificate_rows(owner, len(statuses_and_expiry))
    for row, (status, expires_in) in zip(rows, statuses_and_expiry, strict=True):
        row.zone_id, row.status = ZONE, status
        row.expires_on = None if expires_in is None else now + expires_in
    Certificate.objects.bulk_update(rows, ["zone_id", "status", "expires_on"])


def test_staff_see_the_zones_capacity_and_what_expires_and_waits(staff, alice, settings):
    settings.CLOUDFLARE_ZONE_CAPACITY = 10
    active = Certificate.Status.ACTIVE
    make_rows(
        alice,
        [
            (active, timedelta(days=3)),
            (active, timedelta(days=20)),
            (active, timedelta(days=200)),
            (Certificate.Status.REVOKED, timedelta(days=3)),  # revoked: expiring does not matter
            (Certificate.Status.PENDING_REVOCATION, timedelta(days=100)),
            (Certificate.Status.UNCONFIRMED, None),
        ],
    )
    UnknownCertificate.objects.create(zone_id=ZONE, cloudflare_id="x" * 36, status="active", common_name="stray")

    html = overview(staff)

    # Three active and the unconfirmed issuance; a revocation frees its slot at once, pending or not (FACTS.md §3).
    assert "4 of 10 slots held" in figure(html, "capacity")
    assert figure(html, "expiring").strip().endswith("expiring 1 within 7 days, 2 within 30 days")
    assert "1 pending revocation" in figure(html, "waiting")
    assert "1 issuance unconfirmed" in figure(html, "waiting")
    assert "1 in the zone" in figure(html, "unknown")


def test_each_expiry_figure_links_to_a_list_of_exactly_those_certificates(staff, alice):
    make_rows(alice, [(Certificate.Status.ACTIVE, timedelta(days=d)) for d in (2, 5, 12, 40)])
    html = overview(staff)

    for days, expected in ((7, 2), (30, 3)):
        link = re.search(rf'href="([^"]+)">{expected} within {days} days<', html)
        assert link, (days, html)
        listed = staff.get(link.group(1).replace("&amp;", "&")).content.decode()
        assert len(re.findall(r'<th class="field-name">', listed)) == expected


def test_a_portal_ca_zone_has_no_cap(staff, alice):
    authority = trusted_portal_ca()
    Zone.objects.update_or_create(zone_id=ZONE, defaults={"issuer": authority})

    assert "No cap" in figure(overview(staff), "capacity")


def test_failing_polling_and_sync_are_said_with_their_error(staff):
    now = timezone.now()
    task_run_succeeded(task=enqueue.POLL_CERTIFICATES, now=now - timedelta(minutes=5))
    task_run_failed(task=enqueue.POLL_CERTIFICATES, now=now, error=TimeoutError("Cloudflare did not answer"))
    FirewallState.objects.create(zone_id=ZONE, last_synced_at=now - timedelta(hours=1), last_error="HTTP 429")

    html = overview(staff)

    assert "failing" in figure(html, "poll")
    assert "TimeoutError: Cloudflare did not answer" in figure(html, "poll")
    assert "the latest attempt failed: HTTP 429" in figure(html, "sync")
    assert "no run recorded yet" in figure(html, "reconcile")


def test_a_success_after_a_failure_clears_the_failing_mark(staff):
    now = timezone.now()
    task_run_failed(task=enqueue.POLL_CERTIFICATES, now=now - timedelta(minutes=1), error=TimeoutError("x"))
    task_run_succeeded(task=enqueue.POLL_CERTIFICATES, now=now)

    assert "last succeeded" in figure(overview(staff), "poll")
    assert TaskRun.objects.get(task=enqueue.POLL_CERTIFICATES).failed == 1


def test_rules_and_budget_show_their_use_against_the_limit(staff, settings):
    settings.CLOUDFLARE_CUSTOM_RULES_LIMIT = 5
    FirewallState.objects.create(
        zone_id=ZONE,
        last_synced_at=timezone.now(),
        last_plan={"add": [{}, {}], "update": [], "delete": [], "unchanged": 1, "foreign_rules": 2},
    )

    html = overview(staff)

    assert "5 of 5 (3 the portal's, 2 other teams')" in figure(html, "rules")
    assert "nearly full" in figure(html, "rules")
    assert re.search(r"\d+ of \d+ calls in the current window", figure(html, "budget"))


def test_the_overview_costs_the_same_few_queries_however_many_certificates(staff, alice):
    def index_queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert staff.get(INDEX).status_code == 200
        return len(captured)

    few = index_queries()
    make_rows(alice, [(Certificate.Status.ACTIVE, timedelta(days=n % 60)) for n in range(300)])

    assert index_queries() == few


def test_sync_now_queues_a_sync_at_once_and_collapses_repeated_presses(
    staff, monkeypatch, django_capture_on_commit_callbacks
):
    queued = []
    monkeypatch.setattr(enqueue, "_task", lambda name: type("T", (), {"apply_async": lambda *a, **k: queued.append(k)}))

    with django_capture_on_commit_callbacks(execute=True):
        first = staff.post(SYNC_NOW, follow=True)
        second = staff.post(SYNC_NOW, follow=True)

    assert queued == [{"args": (ZONE,)}]  # no countdown: now, not after the debounce window
    assert FirewallState.objects.get(zone_id=ZONE).sync_requested_at is not None
    assert "A firewall sync is queued" in first.content.decode()
    assert "was queued a few seconds ago" in second.content.decode()


def test_only_staff_may_press_sync_now(client, alice, emulator, monkeypatch, django_capture_on_commit_callbacks):
    queued = []
    monkeypatch.setattr(enqueue, "_task", lambda name: type("T", (), {"apply_async": lambda *a, **k: queued.append(k)}))

    with django_capture_on_commit_callbacks(execute=True):
        anonymous = client.post(SYNC_NOW)
        as_user = signed_in(alice).post(SYNC_NOW)

    assert anonymous.status_code == 302
    assert as_user.status_code == 302
    assert "login" in anonymous["Location"]
    assert "login" in as_user["Location"]
    assert queued == []
    assert not FirewallState.objects.filter(zone_id=ZONE).exists()


def test_sync_now_is_a_post(staff):
    assert staff.get(SYNC_NOW).status_code == 405
