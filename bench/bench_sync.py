"""Cloudflare calls made by a firewall sync (issue 4 targets):

- nothing changed: 1 read, 0 writes;
- one user's allowlist change: 1 read, 1 write;
- first sync for 1,000 users with 5 certificates each: 1 read plus one write per rule
  (a single create when the zone has no entrypoint yet, since the create carries every rule).

Run: .venv/bin/python bench/bench_sync.py
"""

from __future__ import annotations

import hashlib
import time

from harness import header, setup_django, use_emulator, write_result

USERS = 1000
CERTIFICATES_PER_USER = 5


def main() -> None:
    setup_django()
    from django.conf import settings
    from django.contrib.auth import get_user_model

    from certificates.firewall.sync import firewall_sync
    from certificates.models import AllowlistEntry, Certificate
    from cloudflare.models import RuleSpec
    from portal.integrations import get_cloudflare_client

    settings.PORTAL_API_HOSTNAMES = ["api.example.com"]
    settings.CLOUDFLARE_CUSTOM_RULES_LIMIT = 1000  # Enterprise: 5,000 fingerprints need about 100 rules
    zone = settings.CLOUDFLARE_ZONE_ID
    users = get_user_model().objects.bulk_create(
        [get_user_model()(username=f"user{n}", email=f"user{n}@example.com") for n in range(USERS)]
    )
    Certificate.objects.bulk_create(
        [
            Certificate(
                owner=user,
                name=f"c{k}",
                zone_id=zone,
                status=Certificate.Status.ACTIVE,
                cloudflare_id=f"{user.pk:08x}-0000-4000-8000-{k:012x}",
                csr="-",
                public_key_sha256=hashlib.sha256(f"{user.pk}/{k}".encode()).hexdigest(),
                key_type="ec-p256",
                common_name=f"portal-user-{user.pk}",
                validity_days=365,
                fingerprint_sha256=hashlib.sha256(f"fp/{user.pk}/{k}".encode()).hexdigest(),
            )
            for user in users
            for k in range(CERTIFICATES_PER_USER)
        ]
    )
    AllowlistEntry.objects.bulk_create(
        [AllowlistEntry(owner=user, network=f"{20 + user.pk // 250}.{user.pk % 250}.0.0/16") for user in users]
    )
    lines = []

    def measure(label: str, action) -> None:  # type: ignore[no-untyped-def]
        emulator.request_log.clear()
        started = time.perf_counter()
        plan = action()
        elapsed = time.perf_counter() - started
        reads = sum(1 for e in emulator.request_log if e.method == "GET")
        writes = sum(1 for e in emulator.request_log if e.method != "GET")
        rules = len(plan.add) + len(plan.update) + len(plan.delete)
        lines.append(f"{label:<58} reads={reads:<3} writes={writes:<4} rules changed={rules:<4} {elapsed:6.2f} s")

    for first_sync in ("no entrypoint yet", "entrypoint with one rule of another team"):
        emulator = use_emulator(zone_capacity=100_000)
        if first_sync != "no entrypoint yet":
            get_cloudflare_client().create_entrypoint(
                zone, rules=[RuleSpec(ref="other_team", expression='ip.src.country in {"KP"}')]
            )
        measure(
            f"first sync, {USERS} users x {CERTIFICATES_PER_USER} ({first_sync})", lambda: firewall_sync(zone_id=zone)
        )
    measure("sync with nothing changed", lambda: firewall_sync(zone_id=zone))
    AllowlistEntry.objects.filter(owner=users[500]).update(network="9.9.0.0/16")
    measure("one user's allowlist changed", lambda: firewall_sync(zone_id=zone))
    Certificate.objects.filter(owner=users[10], name="c0").update(status=Certificate.Status.PENDING_REVOCATION)
    measure("one certificate revoked (leaves a binding, joins a deny rule)", lambda: firewall_sync(zone_id=zone))

    write_result(
        "sync.txt",
        header(
            "Firewall sync: Cloudflare calls per sync, counted from the emulator's log", "python bench/bench_sync.py"
        )
        + "\n".join(lines)
        + "\n",
    )


if __name__ == "__main__":
    main()
