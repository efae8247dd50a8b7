"""Cloudflare calls and database queries of reconciliation, per pass and per sweep.

Issue 12: reconciliation listed the whole zone every pass, revoked certificates included (1,200 certificates: 24
calls and 1,209 queries). Now it lists only active, pending_revocation and pending_reactivation certificates, 50 a
page, at most RECONCILE_CALLS_PER_PASS calls a pass, resuming where the last pass stopped.

Two zones of 1,200 certificates at Cloudflare (the emulator). In both, 20 of the portal's active certificates were
revoked in Cloudflare's dashboard and are still pending there, and 1 was revoked there and is finished:
- portal: 150 of the portal's active, 1,000 of the portal's revoked, 50 made outside the portal;
- outside: 100 of the portal's active, 700 of the portal's revoked, 400 made outside the portal of which 300 were
  revoked there (before, each was recorded with its own update_or_create on every pass).
Each scenario runs on a fresh zone; "steady" is the next sweep, RECONCILE_SECONDS later (both clocks moved on),
with nothing new.
Run: .venv/bin/python bench/bench_reconcile.py (the same script ran against the code before the change; its
lines are in bench/results/reconcile.txt).
"""

from __future__ import annotations

import time
from datetime import timedelta
from unittest import mock

from harness import header, setup_django, use_emulator, write_result

from tests.emulator.conftest import FakeClock

DRIFTED = 20
# (active, revoked, unknown, unknown revoked): the portal's certificates, and those made outside the portal.
ZONES = {"portal": (150, 1000, 50, 0), "outside": (100, 700, 400, 300)}


def main() -> None:
    setup_django()
    from django.conf import settings

    lines = []
    for zone_name, budget in (("portal", 20), ("portal", 5), ("portal", 2), ("outside", 20)):
        settings.RECONCILE_CALLS_PER_PASS = budget
        lines += scenario(zone_name, f"{zone_name:<7} RECONCILE_CALLS_PER_PASS={budget:<2}")
    write_result(
        "reconcile.txt",
        header(
            "Reconciliation: Cloudflare calls (the emulator's log) and database queries per pass and per sweep, "
            "zones of 1,200 certificates",
            "python bench/bench_reconcile.py",
        )
        + "\n".join(lines)
        + "\n",
    )


def scenario(zone_name: str, label: str) -> list[str]:
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from certificates.models import Certificate, UnknownCertificate
    from tests.support.fleet import seed_fleet, seeding_client

    zone = settings.CLOUDFLARE_ZONE_ID
    Certificate.objects.update(zone_id="f" * 32)  # set aside the previous scenario (the audit log keeps its rows)
    UnknownCertificate.objects.all().delete()
    # Cloudflare takes an hour to finish a revocation here, so that the pending ones are still pending a sweep later.
    emulator = use_emulator(clock=FakeClock(time.time()), revocation_delay=3600)
    owners = [get_user_model().objects.get_or_create(username=f"owner{n}")[0] for n in range(10)]
    active, revoked, unknown, unknown_revoked = ZONES[zone_name]
    fleet = seed_fleet(emulator, zone_id=zone, owners=owners, active=active, revoked=revoked, unknown=unknown)
    client = seeding_client(emulator)
    for issued in fleet.unknown[:unknown_revoked]:
        client.revoke_client_certificate(zone, issued.id)
    client.revoke_client_certificate(zone, fleet.active[0].cloudflare_id)
    emulator.clock.advance(3601)  # that one is revoked at Cloudflare: no listing shows it any more
    for row in fleet.active[1 : 1 + DRIFTED]:
        client.revoke_client_certificate(zone, row.cloudflare_id)  # pending_revocation
    lines = run_sweep(emulator, zone, f"{label} first ")
    emulator.clock.advance(settings.RECONCILE_SECONDS)
    later = timezone.now() + timedelta(seconds=settings.RECONCILE_SECONDS)
    with mock.patch.object(timezone, "now", return_value=later):
        lines += run_sweep(emulator, zone, f"{label} steady")
    return lines


def run_sweep(emulator, zone: str, label: str) -> list[str]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from certificates.services.lifecycle import zone_reconcile
    from certificates.tasks import notify_owners

    lines = []
    calls = queries = 0
    for number in range(1, 100):
        emulator.request_log.clear()
        with CaptureQueriesContext(connection) as captured, mock.patch.object(notify_owners, "delay"):
            result = zone_reconcile(zone_id=zone)
        lists = sum(1 for e in emulator.request_log if e.path.endswith("/client_certificates"))
        reads = len(emulator.request_log) - lists
        calls += lists + reads
        queries += len(captured)
        # The code before the change had no sweeps: each pass listed the whole zone.
        finished = getattr(result, "finished", True)
        lines.append(
            f"{label} pass {number:<2} list calls={lists:<3} single reads={reads:<2} queries={len(captured):<5} "
            f"drifted={len(result.drifted):<3} unknown recorded={result.unknown:<3} sweep finished={finished}"
        )
        if finished:
            break
    lines.append(f"{label} sweep:   calls={calls:<3} queries={queries:<5} passes={number}")
    return lines


if __name__ == "__main__":
    main()
