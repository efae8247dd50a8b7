"""Cloudflare calls and database queries of one polling pass.

Issue 4 target: ceil(P/50) list calls per status, never P GETs. Issue 12 target: the changes recorded in at most
10 queries per page of 50 (P up to 2,000), the owners' emails queued (one task a page), not sent from the pass.
P certificates are pending revocation at Cloudflare; the pass runs once while they are still pending and
once after Cloudflare finished them (then the active certificates are listed once to tell revoked from
reactivated). Run: .venv/bin/python bench/bench_poll.py
"""

from __future__ import annotations

import math
import time
from unittest import mock

from harness import header, setup_django, use_emulator, write_result

from tests.emulator.conftest import FakeClock
from tests.support.pki import make_csr


def main() -> None:
    setup_django()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from certificates.models import Certificate
    from certificates.services.lifecycle import certificates_poll
    from certificates.tasks import notify_owners
    from tests.support.fleet import seeding_client

    zone = settings.CLOUDFLARE_ZONE_ID
    owner = get_user_model().objects.create(username="fleet", email="fleet@example.com")
    csr = make_csr("bench")
    lines = []
    for pending in (1, 50, 51, 120, 500, 2000):
        clock = FakeClock(time.time())
        emulator = use_emulator(clock=clock, zone_capacity=100_000, revocation_delay=60)
        Certificate.objects.update(zone_id="f" * 32)  # set aside the previous round (the audit log keeps them)
        client = seeding_client(emulator)  # its own budget: the seeding costs the portal's nothing
        for n in range(pending):
            issued = client.create_client_certificate(zone, csr=csr, validity_days=30)
            client.revoke_client_certificate(zone, issued.id)
            Certificate.objects.create(
                owner=owner,
                name=f"c{n}",
                zone_id=zone,
                status=Certificate.Status.PENDING_REVOCATION,
                cloudflare_id=issued.id,
                csr=csr,
                public_key_sha256=f"{n:064x}",
                key_type="ec-p256",
                common_name="bench",
                validity_days=30,
                fingerprint_sha256=issued.fingerprint_sha256,
            )
        for phase in ("still pending", "finished"):
            if phase == "finished":
                clock.advance(61)
            emulator.request_log.clear()
            # The queued email tasks are counted, not sent to a broker.
            with CaptureQueriesContext(connection) as queries, mock.patch.object(notify_owners, "delay") as queued:
                result = certificates_poll(zone_id=zone)
            gets = [e for e in emulator.request_log if e.method == "GET"]
            singles = sum(1 for e in gets if not e.path.endswith("/client_certificates"))
            # pending_revocation: ceil(P/50) pages; pending_reactivation: one (empty) page; and, once some have
            # finished, one listing of the active certificates (at most the zone's quota, so 1-2 pages).
            bound = math.ceil(pending / 50) + 1 + (1 if phase == "finished" else 0)
            pages = math.ceil(len(result.changes) / 50)
            lines.append(
                f"P={pending:<4} {phase:<14} list calls={len(gets) - singles:<3} (bound {bound:<2}) "
                f"single GETs={singles}  changed={len(result.changes):<4} "
                f"queries={len(queries):<4} (bound {1 + 10 * pages:<3}) email tasks queued={queued.call_count}"
            )
    write_result(
        "poll.txt",
        header(
            "Polling: Cloudflare calls per pass (the emulator's log), database queries and email tasks queued",
            "python bench/bench_poll.py",
        )
        + "\n".join(lines)
        + "\n",
    )


if __name__ == "__main__":
    main()
