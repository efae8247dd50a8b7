"""The CRL of each portal CA (issue #11): what origins check, since Cloudflare checks no revocation for an uploaded
CA (FACTS.md §3). The portal's deny rules are the revocation at the edge; the CRL is the same list for everyone
else.

Each CRL is signed by its CA, carries a CRL number that only grows, and says when the next one is due
(PORTAL_CRL_VALIDITY_HOURS). It is rebuilt after every change it must show (a revocation, an owner deactivated
or activated again: `crl_request_refresh` marks the CA in the change's transaction and queues a rebuild), by beat
once half of its validity has passed, and by the URL that serves it whenever it is stale, so a lost task delays
nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import BigIntegerField, Func
from django.db.models.functions import Coalesce
from django.db.models.sql.compiler import SQLCompiler
from django.utils import timezone

from certificates.authority import pki
from certificates.enqueue import request_crl_build
from certificates.models import Certificate, CertificateAuthority
from certificates.services.authorities import authority_signing_key


def crl_validity() -> timedelta:
    return timedelta(hours=settings.PORTAL_CRL_VALIDITY_HOURS)


def crl_request_refresh(*, authority_ids: list[int]) -> None:
    """In the caller's transaction: the CAs' CRLs must show a change; a rebuild is queued after the commit.

    The mark updates the CA's row, so a rebuild running at the same time waits for this transaction (it locks the
    row) and then sees the change."""
    if not authority_ids:
        return
    CertificateAuthority.objects.filter(pk__in=authority_ids).update(crl_requested_at=timezone.now())
    for authority_id in authority_ids:
        request_crl_build(authority_id)


def crl_is_stale(authority: CertificateAuthority, now: datetime) -> bool:
    if not authority.crl_der or authority.crl_this_update is None or authority.crl_next_update is None:
        return True
    if authority.crl_requested_at is not None and authority.crl_requested_at >= authority.crl_this_update:
        return True
    return authority.crl_next_update - now < crl_validity() / 2


def crl_refresh(*, authority_id: int, force: bool = False) -> CertificateAuthority:
    """Rebuild the CA's CRL if it is stale (or `force`); returns the CA with its current CRL."""
    if not force:
        # Most fetches find it fresh: no row lock for them. A change not committed yet is not in the CRL anyway; its
        # mark, once committed, makes the next fetch rebuild.
        current = CertificateAuthority.objects.get(pk=authority_id)
        if not crl_is_stale(current, timezone.now()):
            return current
    with transaction.atomic():
        authority = CertificateAuthority.objects.select_for_update().get(pk=authority_id)
        now = timezone.now()
        if not force and not crl_is_stale(authority, now):
            return authority
        key = authority_signing_key(authority)
        ca_certificate = pki.load_certificate(authority.certificate_pem)
        number = authority.crl_number + 1
        crl = pki.build_crl(
            authority=ca_certificate,
            key=key,
            revoked=_entries(authority, now),
            number=number,
            this_update=now,
            next_update=now + crl_validity(),
        )
        authority.crl_der = pki.crl_der(crl)
        authority.crl_number = number
        authority.crl_this_update = now
        authority.crl_next_update = now + crl_validity()
        authority.save(update_fields=["crl_der", "crl_number", "crl_this_update", "crl_next_update"])
        return authority


class EpochSeconds(Func):
    """Whole seconds since 1970 of a datetime: all a CRL keeps of a revocation's time (RFC 5280 encodes whole
    seconds). Read as the database's integer, not as a datetime the driver parses: 10,000 of those took longer than
    building and signing the whole CRL."""

    output_field = BigIntegerField()
    template = "CAST(FLOOR(EXTRACT(EPOCH FROM %(expressions)s)) AS BIGINT)"

    def as_sqlite(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra: Any) -> tuple[str, Any]:
        # strftime's %s, its % doubled twice: once for this template, once for the query's parameters.
        template = "CAST(strftime('%%%%s', %(expressions)s) AS INTEGER)"
        return self.as_sql(compiler, connection, template=template, **extra)


def _entries(authority: CertificateAuthority, now: datetime) -> list[pki.RevokedEntry]:
    """Revoked certificates until they expire (RFC 5280 lets a CRL drop them then), and the usable certificates of
    deactivated owners, on hold."""
    # Unordered: a CRL's entries need no order, and sorting 10,000 rows by the model's ordering costs 5 ms.
    unexpired = Certificate.objects.filter(authority=authority, expires_on__gt=now).order_by()
    revoked = unexpired.filter(status=Certificate.Status.REVOKED).values_list(
        "serial_number", EpochSeconds(Coalesce("revoked_at", "updated_at"))
    )
    held = unexpired.filter(status__in=Certificate.USABLE, owner__is_active=False).values_list(
        "serial_number", EpochSeconds("updated_at")
    )
    entries = [pki.RevokedEntry(int(serial, 16), _utc(seconds)) for serial, seconds in revoked]
    entries += [pki.RevokedEntry(int(serial, 16), _utc(seconds), on_hold=True) for serial, seconds in held]
    return entries


def _utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def crls_refresh_due() -> list[int]:
    """Beat: rebuild every stale CRL of a CA that can still have valid certificates. Returns the CAs rebuilt."""
    now = timezone.now()
    rebuilt = []
    for authority in CertificateAuthority.objects.filter(not_after__gt=now).defer("crl_der", "encrypted_key"):
        if crl_is_stale(authority, now):
            crl_refresh(authority_id=authority.pk)
            rebuilt.append(authority.pk)
    return rebuilt
