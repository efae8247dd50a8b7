"""Queue Celery tasks after the caller's transaction commits: what services, signals and commands call to have
work done in the background.

Tasks are named, not imported: tasks import the services, and the services queue tasks through this module, so an
import either way would close a cycle (services -> tasks -> services). A name is all a Celery producer needs;
the app registers the tasks at start-up (CertificatesConfig.ready), and `_task` fails loudly on a name it does
not know.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from celery import Task, current_app
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from certificates.models import FirewallState

if TYPE_CHECKING:
    from certificates.services.audit import Origin
    from certificates.services.notifications import Notice

logger = logging.getLogger(__name__)

SYNC_FIREWALL = "certificates.tasks.sync_firewall"
POLL_CERTIFICATES = "certificates.tasks.poll_certificates"
RECONCILE_ZONE = "certificates.tasks.reconcile_zone"
CONFIRM_REVOCATION = "certificates.tasks.confirm_revocation"
RECONCILE_CERTIFICATE = "certificates.tasks.reconcile_certificate"
BUILD_CRL = "certificates.tasks.build_crl"
ROTATION_NOTICES = "certificates.tasks.send_rotation_notices"
NOTIFY_OWNERS = "certificates.tasks.notify_owners"
# A chain of follow-up syncs (see request_follow_up_sync) stops after this many; the periodic sync remains.
FOLLOW_UPS_AT_MOST = 3


def _task(name: str) -> Task[Any, Any]:
    """The registered task called `name` (KeyError if there is none: a renamed task must not go quiet)."""
    task: Task[Any, Any] = current_app.tasks[name]
    return task


def _debounce_key(zone_id: str) -> str:
    return f"firewall-sync-queued:{zone_id}"


def _mark_sync_requested(zone_id: str) -> None:
    now = timezone.now()
    # One statement once the zone has its row, which is every request but the zone's first.
    if not FirewallState.objects.filter(zone_id=zone_id).update(sync_requested_at=now):
        FirewallState.objects.update_or_create(zone_id=zone_id, defaults={"sync_requested_at": now})


def request_firewall_sync(zone_id: str) -> None:
    """Mark the zone as needing a sync, in the caller's transaction, and queue one after it commits.

    The mark commits or rolls back with the change, so a committed change always has its sync: the one queued
    here, or, if queueing fails (Redis down), the one beat queues for marked zones (sync_all_firewalls). Syncs
    requested within the debounce window collapse into one.
    """
    _mark_sync_requested(zone_id)

    def enqueue() -> None:
        delay = settings.FIREWALL_SYNC_DEBOUNCE_SECONDS
        # The marker lives exactly as long as the queued sync waits: that sync reads the database after it
        # expires, so it sees every change made meanwhile, and a later change queues a new sync.
        if delay <= 0 or cache.add(_debounce_key(zone_id), "1", timeout=delay):
            _task(SYNC_FIREWALL).apply_async(args=(zone_id,), countdown=delay)

    transaction.on_commit(lambda: _enqueue_quietly(enqueue, f"a firewall sync of zone {zone_id}"))


# Presses of staff's "sync now" within this many seconds queue one sync.
SYNC_NOW_COLLAPSE_SECONDS = 10


def request_firewall_sync_now(zone_id: str) -> bool:
    """Staff's "sync now" (the admin overview): mark the zone as any change does, and queue a sync at once instead
    of after the debounce window. Returns False when a press within SYNC_NOW_COLLAPSE_SECONDS already queued one."""
    _mark_sync_requested(zone_id)
    if not cache.add(f"firewall-sync-now:{zone_id}", "1", timeout=SYNC_NOW_COLLAPSE_SECONDS):
        return False
    transaction.on_commit(
        lambda: _enqueue_quietly(
            lambda: _task(SYNC_FIREWALL).apply_async(args=(zone_id,)), f"a firewall sync of zone {zone_id}"
        )
    )
    return True


def request_follow_up_sync(zone_id: str, *, follow_up: int) -> None:
    """Sync again FIREWALL_FOLLOW_UP_SECONDS from now, when a write whose outcome was unknown has landed or never
    will: whatever a late commit undid is rewritten. `follow_up` counts the chain, which stops at
    FOLLOW_UPS_AT_MOST (Cloudflare hanging on every write must not keep a sync queued forever)."""
    if follow_up > FOLLOW_UPS_AT_MOST:
        logger.warning(
            "zone %s: %d follow-up syncs in a row met unknown outcomes; the periodic sync goes on",
            zone_id,
            follow_up - 1,
        )
        return
    delay = settings.FIREWALL_FOLLOW_UP_SECONDS

    def enqueue() -> None:
        # One follow-up a zone at a time: it reads the rules after every uncertain write before it.
        if cache.add(f"firewall-follow-up:{zone_id}", "1", timeout=delay):
            _task(SYNC_FIREWALL).apply_async(args=(zone_id,), kwargs={"follow_up": follow_up}, countdown=delay)

    transaction.on_commit(lambda: _enqueue_quietly(enqueue, f"a follow-up sync of zone {zone_id}"))


def request_revocation_check(certificate_id: int, *, reason: str, origin: Origin) -> None:
    actor_id = origin.actor.pk if origin.actor is not None and origin.actor.is_authenticated else None
    # Lost with Redis down: the periodic reconciliation still records a revocation Cloudflare carried out.
    transaction.on_commit(
        lambda: _enqueue_quietly(
            lambda: _task(CONFIRM_REVOCATION).delay(certificate_id, reason, actor_id, origin.remote_addr),
            f"the revocation check of certificate {certificate_id}",
        )
    )


def request_crl_build(authority_id: int) -> None:
    # Lost with Redis down: the CA's mark (crl_requested_at) makes the CRL's URL and beat rebuild it.
    transaction.on_commit(
        lambda: _enqueue_quietly(lambda: _task(BUILD_CRL).delay(authority_id), f"the CRL of portal CA {authority_id}")
    )


def request_reconcile(certificate_id: int) -> None:
    # sweep_stuck re-queues an unconfirmed row nobody settles, so a lost message only delays it.
    transaction.on_commit(
        lambda: _enqueue_quietly(
            lambda: _task(RECONCILE_CERTIFICATE).apply_async(args=(certificate_id,), countdown=10),
            f"the reconciliation of certificate {certificate_id}",
        )
    )


def request_rotation_notices() -> None:
    """Email the owners of a replaced portal CA's certificates now; lost with Redis down, the hourly
    retire_authorities sends them (the audit log says who has had theirs)."""
    transaction.on_commit(
        lambda: _enqueue_quietly(lambda: _task(ROTATION_NOTICES).delay(), "the notices of a CA rotation")
    )


def request_owner_emails(notices: list[Notice]) -> None:
    """Email the owners after the commit, from a task of its own that retries what the mail server refused: a slow
    or failing mail server never holds up the caller. Lost with Redis down (logged): the audit log keeps the change."""
    transaction.on_commit(
        lambda: _enqueue_quietly(
            lambda: _task(NOTIFY_OWNERS).delay(notices), f"the emails of {len(notices)} certificate owner(s)"
        )
    )


def _enqueue_quietly(enqueue: Callable[[], object], what: str) -> None:
    """Queue after a commit without ever failing the request that committed: the database already holds what
    makes the work happen later (a mark, a row in flight), so a broker or cache error is logged, not raised."""
    try:
        enqueue()
    except Exception:  # redis, kombu, or anything else between us and the broker: the commit stands either way
        logger.exception("Could not queue %s; the periodic tasks will pick it up", what)
