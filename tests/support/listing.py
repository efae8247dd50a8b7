"""Many certificate rows at once, for the paged lists (rows only: nothing is signed or sent to Cloudflare)."""

from __future__ import annotations

import secrets
from datetime import timedelta

from django.utils import timezone

from certificates.listing import FAR_FUTURE
from certificates.models import Certificate

# A status for each row in turn; in-flight rows have no expiry yet, which the expiry sorts must still page.
STATUS_CYCLE = (
    Certificate.Status.ACTIVE,
    Certificate.Status.ACTIVE,
    Certificate.Status.REVOKED,
    Certificate.Status.EXPIRED,
    Certificate.Status.ISSUING,
    Certificate.Status.PENDING_REACTIVATION,
)


def certificate_rows(owner, count: int, *, authority=None) -> list[Certificate]:
    """`count` rows of `owner`: they come in pairs made at the same moment, and rows 90 apart expire together, so
    both sorts meet ties that only the id breaks."""
    now = timezone.now()
    rows = []
    for n in range(count):
        status = STATUS_CYCLE[n % len(STATUS_CYCLE)]
        created = now - timedelta(minutes=n // 2 * 7)
        expires = None if status == Certificate.Status.ISSUING else now + timedelta(days=(n * 37) % 90 - 10)
        rows.append(
            Certificate(
                owner=owner,
                authority=authority,
                serial_number=secrets.token_hex(18).upper(),
                name=f"row-{n}",
                zone_id="zone",
                status=status,
                csr="-",
                public_key_sha256=secrets.token_hex(32),
                key_type="ec",
                common_name=f"portal-user-{owner.pk}",
                validity_days=90,
                fingerprint_sha256=secrets.token_hex(32),
                created_at=created,
                expires_on=expires,
            )
        )
    return Certificate.objects.bulk_create(rows)


def expected_order(owner, sort: str, statuses=None) -> list[int]:
    """The ids of `owner`'s rows in the order a sort promises, computed here in Python, not by the listing."""
    rows = Certificate.objects.filter(owner=owner)
    if statuses is not None:
        rows = rows.filter(status__in=statuses)
    field = sort.removeprefix("-")

    def key(row: Certificate) -> tuple:
        value = getattr(row, field)
        return (FAR_FUTURE if value is None else value, row.pk)

    return [row.pk for row in sorted(rows, key=key, reverse=sort.startswith("-"))]
