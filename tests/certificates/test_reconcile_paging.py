"""Reconciliation in sweeps (issue 12): only the statuses in use are listed, a page at a time within
RECONCILE_CALLS_PER_PASS calls a pass, each pass resuming where the last stopped; what no listing showed is read on
its own before anything is recorded, and what only a whole sweep can tell waits for its end."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import parse_qsl, urlsplit

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from certificates.cloudflare_client import get_emulator_session
from certificates.models import AuditEvent, Certificate, ReconcileSweep, UnknownCertificate
from certificates.services import lifecycle
from cloudflare.client import CloudflareClient
from tests.conftest import make_user
from tests.support.fleet import seed_fleet, seeding_client
from tests.support.pki import make_csr

ZONE = "0" * 32
LISTED = {"active", "pending_revocation", "pending_reactivation"}


@dataclass
class Wire:
    """The portal's calls to Cloudflare as they went over the wire, query strings included."""

    lists: list[tuple[str, int]] = field(default_factory=list)  # (status, page)
    listed_ids: set[str] = field(default_factory=set)
    reads: list[str] = field(default_factory=list)  # ids read on their own

    def clear(self) -> None:
        self.lists.clear()
        self.reads.clear()


def record_wire(emulator) -> Wire:
    """From now on (after any seeding, which uses the same session)."""
    wire = Wire()

    def record(response, *args, **kwargs):
        url = urlsplit(response.request.url)
        if response.request.method != "GET" or "/client_certificates" not in url.path:
            return
        tail = url.path.split("/client_certificates", 1)[1].strip("/")
        if tail:
            wire.reads.append(tail)
            return
        query = dict(parse_qsl(url.query))
        wire.lists.append((query.get("status", ""), int(query.get("page", "1"))))
        wire.listed_ids.update(item["id"] for item in json.loads(response.content)["result"])

    get_emulator_session(emulator).hooks["response"].append(record)
    return wire


@pytest.fixture
def owners(db):
    return [make_user(f"owner{n}") for n in range(3)]


def reconcile_until_finished(passes: int = 20) -> list[lifecycle.ReconcileResult]:
    results = []
    for _ in range(passes):
        results.append(lifecycle.zone_reconcile(zone_id=ZONE))
        if results[-1].finished:
            return results
    raise AssertionError(f"the sweep did not finish in {passes} passes")


def revoked_outside_the_portal(emulator, certificate: Certificate, *, finished: bool) -> None:
    seeding_client(emulator).revoke_client_certificate(ZONE, certificate.cloudflare_id)
    if finished:
        emulator.clock.advance(emulator.settings.revocation_delay + 1)


def test_a_sweep_split_across_passes_by_the_budget_resumes_and_finishes(emulator, owners, settings):
    fleet = seed_fleet(emulator, zone_id=ZONE, owners=owners, active=120)
    moved = fleet.active[0]
    revoked_outside_the_portal(emulator, moved, finished=False)  # pending_revocation at Cloudflare
    wire = record_wire(emulator)
    settings.RECONCILE_CALLS_PER_PASS = 2

    results = reconcile_until_finished()

    # active: 3 pages of 50 (119 left), then one page of each pending status: every page read once, in order.
    assert wire.lists == [
        ("active", 1),
        ("active", 2),
        ("active", 3),
        ("pending_revocation", 1),
        ("pending_reactivation", 1),
    ]
    assert [(r.calls, r.finished) for r in results] == [(2, False), (2, False), (1, True)]
    assert [[(c.certificate_id, c.old, c.new) for c in r.drifted] for r in results] == [
        [],
        [(moved.pk, "active", "pending_revocation")],
        [],
    ]
    assert wire.reads == []
    assert Certificate.objects.filter(status=Certificate.Status.ACTIVE).count() == 119

    wire.clear()
    lifecycle.zone_reconcile(zone_id=ZONE)

    assert wire.lists == [("active", 1), ("active", 2)], "the next pass begins a new sweep"


def test_a_certificate_revoked_outside_the_portal_is_recorded_only_once_a_get_confirms_it(
    emulator, owners, settings, django_capture_on_commit_callbacks, mailoutbox
):
    fleet = seed_fleet(emulator, zone_id=ZONE, owners=owners, active=3)
    gone = fleet.active[1]
    revoked_outside_the_portal(emulator, gone, finished=True)  # revoked: in no listing any more
    wire = record_wire(emulator)
    settings.RECONCILE_CALLS_PER_PASS = 3  # exactly the three listings

    first = lifecycle.zone_reconcile(zone_id=ZONE)

    assert (first.calls, first.finished, first.drifted) == (3, False, [])
    assert Certificate.objects.get(pk=gone.pk).status == Certificate.Status.ACTIVE
    assert not AuditEvent.objects.exists()

    with django_capture_on_commit_callbacks(execute=True):
        second = lifecycle.zone_reconcile(zone_id=ZONE)

    assert wire.reads == [gone.cloudflare_id]
    assert (second.calls, second.finished) == (1, True)
    assert [(c.certificate_id, c.old, c.new) for c in second.drifted] == [(gone.pk, "active", "revoked")]
    event = AuditEvent.objects.get()
    assert (event.certificate_id, event.action, event.detail) == (
        gone.pk,
        AuditEvent.Action.REVOKED,
        {"source": "changed outside the portal"},
    )
    assert [m.to for m in mailoutbox] == [[gone.owner.email]]
    assert set(Certificate.objects.exclude(pk=gone.pk).values_list("status", flat=True)) == {"active"}


def test_a_listing_that_shifts_during_the_sweep_records_no_wrong_status_and_fails_no_issuance(
    emulator, owners, settings
):
    fleet = seed_fleet(emulator, zone_id=ZONE, owners=owners, active=100)
    long_ago = timezone.now() - timedelta(hours=1)
    unconfirmed = Certificate.objects.create(
        owner=owners[0],
        name="lost answer",
        zone_id=ZONE,
        status=Certificate.Status.UNCONFIRMED,
        csr=make_csr("never-made"),
        public_key_sha256="f" * 64,
        key_type="ec-p256",
        common_name="never-made",
        validity_days=30,
        updated_at=long_ago,
    )
    wire = record_wire(emulator)
    settings.RECONCILE_CALLS_PER_PASS = 1

    lifecycle.zone_reconcile(zone_id=ZONE)  # active, page 1
    first_page = set(wire.listed_ids)
    revoked = next(row for row in fleet.active if row.cloudflare_id in first_page)
    # Revoked in the dashboard between two passes: every later certificate moves up one place, and the first of
    # page 2 onto page 1, which the sweep has read already.
    revoked_outside_the_portal(emulator, revoked, finished=True)
    settings.RECONCILE_CALLS_PER_PASS = 10
    results = reconcile_until_finished()

    skipped = [row for row in fleet.active if row.cloudflare_id not in wire.listed_ids]
    assert len(skipped) == 1, "the shift hid one certificate from the listings"
    # The hidden one is read on its own and found active: nothing is recorded for it. The revoked one was listed
    # active before it was revoked; the sweep took it as it was then.
    assert wire.reads == [skipped[0].cloudflare_id]
    assert [r.drifted for r in results] == [[]] * len(results)
    assert not AuditEvent.objects.exists()
    # The shift could have hidden the unconfirmed issuance's certificate too: it is not failed on this sweep's word.
    assert Certificate.objects.get(pk=unconfirmed.pk).status == Certificate.Status.UNCONFIRMED
    wire.clear()

    later = reconcile_until_finished()

    assert wire.reads == [revoked.cloudflare_id], "the next sweep finds the revoked one absent and reads it"
    assert [(c.certificate_id, c.new) for r in later for c in r.drifted] == [(revoked.pk, "revoked")]
    assert Certificate.objects.get(pk=skipped[0].pk).status == Certificate.Status.ACTIVE
    assert later[-1].failed == [unconfirmed.pk], "a sweep whose listings held still fails it"
    assert Certificate.objects.get(pk=unconfirmed.pk).status == Certificate.Status.FAILED


def test_an_unconfirmed_issuance_is_failed_only_if_its_grace_ended_before_the_sweep_began(emulator, owners):
    seed_fleet(emulator, zone_id=ZONE, owners=owners, active=1)
    now = timezone.now()

    def unconfirmed(name, since):
        return Certificate.objects.create(
            owner=owners[0],
            name=name,
            zone_id=ZONE,
            status=Certificate.Status.UNCONFIRMED,
            csr=make_csr(name),
            public_key_sha256=name[0] * 64,
            key_type="ec-p256",
            common_name=name,
            validity_days=30,
            updated_at=since,
        )

    settled = unconfirmed("a-settled", now - timedelta(hours=1))
    recent = unconfirmed("b-recent", now - timedelta(seconds=5))  # Cloudflare may still commit it

    result = lifecycle.zone_reconcile(zone_id=ZONE)

    assert result.finished
    assert result.failed == [settled.pk]
    assert Certificate.objects.get(pk=recent.pk).status == Certificate.Status.UNCONFIRMED


def test_a_row_recorded_by_someone_else_during_the_read_is_not_recorded_again(emulator, owners, monkeypatch):
    fleet = seed_fleet(emulator, zone_id=ZONE, owners=owners, active=2)
    gone = fleet.active[0]
    revoked_outside_the_portal(emulator, gone, finished=True)
    real_get = CloudflareClient.get_client_certificate

    def polling_records_it_meanwhile(client, zone_id, certificate_id):
        answer = real_get(client, zone_id, certificate_id)
        Certificate.objects.filter(pk=gone.pk).update(status=Certificate.Status.REVOKED, updated_at=timezone.now())
        return answer

    monkeypatch.setattr(CloudflareClient, "get_client_certificate", polling_records_it_meanwhile)

    result = lifecycle.zone_reconcile(zone_id=ZONE)

    assert result.finished
    assert result.drifted == []
    assert not AuditEvent.objects.exists(), "the row moved after it was read: reconciliation leaves it alone"


def test_a_row_the_portal_changes_during_the_sweep_is_left_to_the_next_sweep(emulator, owners, settings):
    fleet = seed_fleet(emulator, zone_id=ZONE, owners=owners, active=60)
    wire = record_wire(emulator)
    settings.RECONCILE_CALLS_PER_PASS = 1
    lifecycle.zone_reconcile(zone_id=ZONE)  # active, page 1
    changed = next(row for row in fleet.active if row.cloudflare_id not in wire.listed_ids)
    # The portal moves a row of a page not read yet (staff revoke it, say, and Cloudflare finishes): no listing
    # shows it any more, and the row is newer than the sweep.
    revoked_outside_the_portal(emulator, changed, finished=True)
    Certificate.objects.filter(pk=changed.pk).update(
        status=Certificate.Status.PENDING_REVOCATION, updated_at=timezone.now()
    )
    settings.RECONCILE_CALLS_PER_PASS = 10

    reconcile_until_finished()

    assert wire.reads == []
    assert Certificate.objects.get(pk=changed.pk).status == Certificate.Status.PENDING_REVOCATION
    assert not AuditEvent.objects.exists()


def test_unknown_certificates_are_recorded_page_by_page_and_forgotten_only_when_a_sweep_ends(
    emulator, owners, settings
):
    fleet = seed_fleet(emulator, zone_id=ZONE, owners=owners, active=60, unknown=2)
    lifecycle.zone_reconcile(zone_id=ZONE)
    assert set(UnknownCertificate.objects.values_list("cloudflare_id", flat=True)) == {c.id for c in fleet.unknown}
    client = seeding_client(emulator)
    dropped, kept = fleet.unknown
    client.revoke_client_certificate(ZONE, dropped.id)
    emulator.clock.advance(emulator.settings.revocation_delay + 1)
    newcomer = client.create_client_certificate(ZONE, csr=make_csr("made-in-dashboard"), validity_days=30)
    settings.RECONCILE_CALLS_PER_PASS = 1

    seen_by_pass = []
    while True:
        result = lifecycle.zone_reconcile(zone_id=ZONE)
        seen_by_pass.append(set(UnknownCertificate.objects.values_list("cloudflare_id", flat=True)))
        if result.finished:
            break

    assert len(seen_by_pass) == 4  # active (2 pages), pending_revocation, pending_reactivation
    assert all(dropped.id in seen for seen in seen_by_pass[:-1]), "kept until the sweep ends"
    assert newcomer.id in seen_by_pass[1], "recorded on its page, before the sweep ends"
    assert seen_by_pass[-1] == {kept.id, newcomer.id}
    assert UnknownCertificate.objects.get(cloudflare_id=newcomer.id).common_name == "made-in-dashboard"


def test_an_unknown_row_left_for_a_certificate_staff_adopted_is_forgotten_when_the_sweep_ends(emulator, owners):
    fleet = seed_fleet(emulator, zone_id=ZONE, owners=owners, active=1)
    # Written back by a pass that listed the certificate before the adoption committed.
    UnknownCertificate.objects.create(zone_id=ZONE, cloudflare_id=fleet.active[0].cloudflare_id, status="active")

    assert lifecycle.zone_reconcile(zone_id=ZONE).finished
    assert not UnknownCertificate.objects.exists()


def test_a_sweep_stored_by_another_version_begins_anew(emulator, owners):
    seed_fleet(emulator, zone_id=ZONE, owners=owners, active=1)
    ReconcileSweep.objects.create(zone_id=ZONE, started_at=timezone.now(), listing="all", page=7)

    result = lifecycle.zone_reconcile(zone_id=ZONE)

    assert (result.calls, result.finished) == (3, True)


def test_revoked_certificates_are_never_listed(emulator, owners):
    seed_fleet(emulator, zone_id=ZONE, owners=owners, active=10, revoked=300, unknown=5)
    wire = record_wire(emulator)

    result = lifecycle.zone_reconcile(zone_id=ZONE)

    assert result.finished
    assert wire.lists == [("active", 1), ("pending_revocation", 1), ("pending_reactivation", 1)]
    assert {status for status, _page in wire.lists} <= LISTED
    assert wire.reads == []
    assert Certificate.objects.filter(status=Certificate.Status.REVOKED).count() == 300
    assert not AuditEvent.objects.exists()


def test_a_pass_over_1200_certificates_costs_a_bounded_number_of_queries_a_page(emulator, owners):
    fleet = seed_fleet(emulator, zone_id=ZONE, owners=owners, active=150, revoked=1000, unknown=50)
    for row in fleet.active[:20]:
        revoked_outside_the_portal(emulator, row, finished=False)
    wire = record_wire(emulator)

    with CaptureQueriesContext(connection) as queries:
        result = lifecycle.zone_reconcile(zone_id=ZONE)

    pages = len(wire.lists)
    # active: 130 of the portal's and 50 unknown (4 pages); pending_revocation: 20 (1); pending_reactivation: 1.
    assert (pages, result.calls, result.finished) == (6, 6, True)
    assert len(result.drifted) == 20
    assert result.unknown == 50
    # Before: 1,209 queries (one update_or_create per unknown certificate). Now a few a page, and a few a pass
    # (the sweep's row, stuck and unconfirmed issuances, the sweep's end, expiry).
    per_page, per_pass = 10, 12  # 58 in all when this was written
    assert len(queries) <= per_pass + per_page * pages, [q["sql"][:80] for q in queries.captured_queries]
    inserts = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("INSERT")]
    assert sum('"certificates_unknowncertificate"' in sql for sql in inserts) <= pages  # one upsert a page at most
    assert sum('"certificates_auditevent"' in sql for sql in inserts) == 1  # the 20 drifts share a page


def test_expired_certificates_are_marked_in_one_update_and_one_audit_insert(db, owners):
    now = timezone.now()
    rows = Certificate.objects.bulk_create(
        Certificate(
            owner=owners[n % 3],
            name=f"c{n}",
            zone_id=ZONE,
            status=Certificate.Status.PENDING_REACTIVATION if n % 2 else Certificate.Status.ACTIVE,
            cloudflare_id=f"{n:032x}",
            csr="",
            public_key_sha256=f"{n:064x}",
            key_type="ec-p256",
            common_name="fleet",
            validity_days=30,
            expires_on=now - timedelta(minutes=1) if n < 60 else now + timedelta(days=1),
        )
        for n in range(70)
    )

    with CaptureQueriesContext(connection) as queries:
        expired = lifecycle.certificates_mark_expired(zone_id=ZONE, now=now)

    assert sorted(expired) == sorted(row.pk for row in rows[:60])
    statements = [q["sql"].split()[0] for q in queries.captured_queries]
    assert statements.count("UPDATE") == 1
    assert statements.count("INSERT") == 1
    events = AuditEvent.objects.filter(action=AuditEvent.Action.EXPIRED, new_status="expired")
    assert sorted(events.values_list("certificate_id", "old_status")) == sorted(
        (row.pk, row.status) for row in rows[:60]
    )
    assert Certificate.objects.filter(status=Certificate.Status.EXPIRED).count() == 60
    assert lifecycle.certificates_mark_expired(zone_id=ZONE, now=now) == []


def test_a_pass_stores_where_the_sweep_stopped(emulator, owners, settings):
    seed_fleet(emulator, zone_id=ZONE, owners=owners, active=51)
    settings.RECONCILE_CALLS_PER_PASS = 1

    lifecycle.zone_reconcile(zone_id=ZONE)

    sweep = ReconcileSweep.objects.get()
    assert (sweep.zone_id, sweep.listing, sweep.page) == (ZONE, "active", 2)
    assert sweep.started_at is not None
    assert sweep.seen.count() == 50
