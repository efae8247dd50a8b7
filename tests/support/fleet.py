"""A zone with many certificates, for reconciliation's tests and benchmark: made at the emulator through its API, with
the portal's rows for those the portal issued.

The calls go through a client of their own, with a budget of their own, so that the seeding costs the portal's
call budget nothing; the emulator is given room (quota and rate limit) for thousands of certificates.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone

from certificates.cloudflare_client import EMULATOR_BASE_URL, EMULATOR_TOKEN, get_emulator_session
from certificates.models import Certificate
from cloudflare.budget import LocalBudget
from cloudflare.client import CloudflareClient
from cloudflare.models import ClientCertificate
from tests.support.pki import make_csr


@dataclass
class Fleet:
    active: list[Certificate]  # the portal's, active at Cloudflare
    revoked: list[Certificate]  # the portal's, revoked at Cloudflare and in the portal
    unknown: list[ClientCertificate]  # made outside the portal, active at Cloudflare


def seeding_client(emulator) -> CloudflareClient:
    emulator.settings = dataclasses.replace(emulator.settings, zone_capacity=1_000_000, rate_limit=1_000_000)
    return CloudflareClient(
        api_token=EMULATOR_TOKEN,
        base_url=EMULATOR_BASE_URL,
        session=get_emulator_session(emulator),
        budget=LocalBudget(limit=1_000_000),
    )


def seed_fleet(emulator, *, zone_id: str, owners, active: int, revoked: int = 0, unknown: int = 0) -> Fleet:
    """`active` + `revoked` certificates of the portal (owned in turn by `owners`) and `unknown` ones made outside it.
    Cloudflare has finished every revocation; the portal's rows last changed an hour ago."""
    client = seeding_client(emulator)
    csr = make_csr("fleet")
    made = [
        client.create_client_certificate(zone_id, csr=csr, validity_days=30) for _ in range(active + revoked + unknown)
    ]
    for issued in made[active : active + revoked]:
        client.revoke_client_certificate(zone_id, issued.id)
    emulator.clock.advance(emulator.settings.revocation_delay + 1)
    an_hour_ago = timezone.now() - timedelta(hours=1)
    rows = Certificate.objects.bulk_create(
        Certificate(
            owner=owners[n % len(owners)],
            name=f"c{n}",
            zone_id=zone_id,
            status=Certificate.Status.ACTIVE if n < active else Certificate.Status.REVOKED,
            cloudflare_id=issued.id,
            csr=csr,
            public_key_sha256=f"{n:064x}",
            key_type="ec-p256",
            common_name="fleet",
            validity_days=30,
            fingerprint_sha256=issued.fingerprint_sha256,
            expires_on=issued.expires_on,
            created_at=an_hour_ago,
            updated_at=an_hour_ago,
        )
        for n, issued in enumerate(made[: active + revoked])
    )
    return Fleet(active=rows[:active], revoked=rows[active:], unknown=made[active + revoked :])
