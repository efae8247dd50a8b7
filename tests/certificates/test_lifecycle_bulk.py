"""A polling pass at scale (issue 12): recorded a page of 50 at a time in a few queries, the emails queued."""

from __future__ import annotations

import math
from unittest import mock

from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from certificates import tasks
from certificates.models import AuditEvent, Certificate
from certificates.services import lifecycle
from tests.conftest import make_user

ZONE = "0" * 32


class FinishedAtCloudflare:
    """Cloudflare's listings once every revocation has finished: nothing pending, nothing active."""

    def __init__(self, on_listing=lambda: None):
        self.on_listing = on_listing

    def iter_client_certificates(self, zone_id, status):
        self.on_listing()
        return iter(())


def pending_revocations(owners, count):
    return Certificate.objects.bulk_create(
        Certificate(
            owner=owners[n % len(owners)],
            name=f"c{n}",
            zone_id=ZONE,
            status=Certificate.Status.PENDING_REVOCATION,
            cloudflare_id=f"{n:036x}",
            csr="",
            public_key_sha256=f"{n:064x}",
            key_type="ec-p256",
            common_name="fleet",
            validity_days=30,
        )
        for n in range(count)
    )


def test_a_pass_records_2000_finished_revocations_in_a_few_queries_a_page(
    db, monkeypatch, django_capture_on_commit_callbacks
):
    owners = [make_user(f"owner{n}") for n in range(7)]
    rows = pending_revocations(owners, 2000)
    monkeypatch.setattr(lifecycle, "get_cloudflare_client", FinishedAtCloudflare)
    pages = math.ceil(len(rows) / lifecycle.RECORD_PAGE)

    with CaptureQueriesContext(connection) as queries, django_capture_on_commit_callbacks() as queued:
        result = lifecycle.certificates_poll(zone_id=ZONE)
    with mock.patch.object(tasks.notify_owners, "delay") as delay:
        for enqueue in queued:  # what the commits queue
            enqueue()

    assert len(result.changes) == 2000
    # One read of the rows in flight, then per page: a savepoint, the locking read, one UPDATE, one INSERT and
    # the release. The target is at most 10 a page; the emails are not sent from the pass.
    assert len(queries) <= 1 + 10 * pages
    assert sum(1 for q in queries.captured_queries if q["sql"].startswith("UPDATE")) == pages
    assert sum(1 for q in queries.captured_queries if q["sql"].startswith("INSERT")) == pages
    assert set(Certificate.objects.values_list("status", flat=True)) == {Certificate.Status.REVOKED}
    events = AuditEvent.objects.filter(action=AuditEvent.Action.REVOKED, actor=None, detail={"source": "polled"})
    assert events.filter(old_status="pending_revocation", new_status="revoked").count() == 2000
    assert set(events.values_list("certificate_id", flat=True)) == {row.pk for row in rows}
    assert delay.call_count == pages  # one email task a page
    mail.outbox.clear()

    for call in delay.call_args_list:
        tasks.notify_owners.apply(args=call.args)

    assert len(mail.outbox) == 2000
    assert {m.to[0] for m in mail.outbox} == {owner.email for owner in owners}
    assert all("revoked" in m.subject for m in mail.outbox)


def test_a_row_changed_while_the_pass_listed_is_left_alone(db, monkeypatch, django_capture_on_commit_callbacks):
    alice = make_user("alice")
    reactivated, touched, finished = pending_revocations([alice], 3)

    def staff_act_meanwhile():
        # Between the pass's read and its write: staff reactivate one row, and something else touches another.
        Certificate.objects.filter(pk=reactivated.pk).update(
            status=Certificate.Status.PENDING_REACTIVATION, updated_at=timezone.now()
        )
        Certificate.objects.filter(pk=touched.pk).update(updated_at=timezone.now())

    monkeypatch.setattr(lifecycle, "get_cloudflare_client", lambda: FinishedAtCloudflare(staff_act_meanwhile))
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        result = lifecycle.certificates_poll(zone_id=ZONE)

    assert [(c.certificate_id, c.new) for c in result.changes] == [(finished.pk, "revoked")]
    statuses = dict(Certificate.objects.values_list("pk", "status"))
    assert statuses == {
        reactivated.pk: Certificate.Status.PENDING_REACTIVATION,
        touched.pk: Certificate.Status.PENDING_REVOCATION,
        finished.pk: Certificate.Status.REVOKED,
    }
    assert list(AuditEvent.objects.values_list("certificate_id", flat=True)) == [finished.pk]
    assert [m.to for m in mail.outbox] == [["alice@example.com"]]
