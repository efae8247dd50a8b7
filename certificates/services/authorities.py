"""Portal CAs (DESIGN.md "Issuers", 2): made or imported here, their keys kept encrypted (certificates.authority).

Further down: uploading to Cloudflare with the hostname associations, removal, the zone's choice of issuer, and
rotation (owners told to renew, retired CAs removed once their last certificate is gone). README, "Issuers".
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.cache import cache
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from certificates.authority import keystore, pki, serials
from certificates.authority.keystore import KeystoreError, SigningKey
from certificates.cloudflare_client import get_cloudflare_client, get_zone_id
from certificates.enqueue import request_firewall_sync, request_rotation_notices
from certificates.models import AuditEvent, Certificate, CertificateAuthority, OwnerSerialTag, Zone
from certificates.services.audit import Origin, audit
from certificates.services.cleaning import clean_name
from certificates.services.errors import (
    AuthorityUnavailableError,
    CloudflareUnavailableError,
    InvalidTransitionError,
    PolicyError,
    QuotaError,
    ServiceError,
    first_message,
)
from cloudflare import errors as cf_errors
from cloudflare.client import CloudflareClient
from cloudflare.models import MTLSCertificate

logger = logging.getLogger(__name__)

# What the portal does by itself (the periodic retirement, its notices), as the audit log records it.
SYSTEM = Origin(actor=None)


def authority_create(*, name: str, algorithm: str, validity_days: int, origin: Origin) -> CertificateAuthority:
    """A new issuing CA made by the portal; its key never leaves the database except encrypted."""
    name = clean_name(name, what="CA")
    try:
        authority, key = pki.create_authority(
            common_name=name,
            organization=settings.CERTIFICATE_SUBJECT_ORGANIZATION,
            algorithm=algorithm,
            validity_days=validity_days,
            now=timezone.now(),
        )
    except pki.AuthorityError as exc:
        raise PolicyError(str(exc)) from exc
    return _store(name=name, authority=authority, key=key, imported=False, origin=origin)


def authority_import(
    *, name: str, chain_pem: str, key_pem: str, password: str = "", origin: Origin
) -> CertificateAuthority:
    """An existing intermediate and its key (a company's own PKI). It should be dedicated to the portal: the edge
    lets through only serials with the zone's marker, but the CA's other certificates would verify at origins."""
    name = clean_name(name, what="CA")
    try:
        authority, key = pki.import_authority(
            chain_pem=chain_pem, key_pem=key_pem, password=password, now=timezone.now()
        )
    except pki.AuthorityError as exc:
        raise PolicyError(str(exc)) from exc
    return _store(name=name, authority=authority, key=key, imported=True, origin=origin)


def _store(
    *, name: str, authority: pki.Authority, key: SigningKey, imported: bool, origin: Origin
) -> CertificateAuthority:
    try:
        encrypted = keystore.encrypt_key(key)
    except KeystoreError as exc:
        raise AuthorityUnavailableError(str(exc)) from exc
    certificate = authority.certificate
    try:
        with transaction.atomic():
            ca = CertificateAuthority.objects.create(
                name=name,
                key_algorithm=authority.algorithm,
                imported=imported,
                certificate_pem=authority.certificate_pem,
                chain_pem=authority.chain_pem,
                encrypted_key=encrypted,
                subject_key_identifier=authority.subject_key_identifier,
                subject=certificate.subject.rfc4514_string()[:500],
                not_before=certificate.not_valid_before_utc,
                not_after=certificate.not_valid_after_utc,
            )
    except IntegrityError:
        raise PolicyError("This CA is in the portal already.") from None
    audit(
        AuditEvent.Action.CA_IMPORTED if imported else AuditEvent.Action.CA_CREATED,
        origin,
        detail={"authority_id": ca.pk, "name": ca.name, "subject_key_identifier": ca.subject_key_identifier},
    )
    return ca


def authority_signing_key(ca: CertificateAuthority) -> SigningKey:
    try:
        return keystore.decrypt_key(ca.encrypted_key)
    except KeystoreError as exc:
        raise AuthorityUnavailableError(str(exc)) from exc


def zone_with_marker(zone_id: str) -> Zone:
    """The zone's row, with its serial marker made on first use (certificates.authority.serials)."""
    zone, _ = Zone.objects.get_or_create(zone_id=zone_id)
    if not zone.serial_marker:
        Zone.objects.filter(pk=zone.pk, serial_marker="").update(serial_marker=serials.new_marker())
        zone.refresh_from_db()
    return zone


def owner_tag(user: User) -> str:
    """The user's serial tag, made on first use; unique across users (a clash, 1 in 4 billion, draws again).

    Made when the user first sets an allowlist (and when a portal CA becomes a zone's issuer, for every user with
    one), not only at their first issuance: the binding rules tie a tag to its owner's networks, so a first
    certificate is bound from the moment it is signed, not from the sync that follows."""
    existing: str | None = OwnerSerialTag.objects.filter(user=user).values_list("tag", flat=True).first()
    if existing is not None:
        return existing
    while True:
        try:
            with transaction.atomic():
                return OwnerSerialTag.objects.create(user=user, tag=serials.new_tag()).tag
        except IntegrityError:
            existing = OwnerSerialTag.objects.filter(user=user).values_list("tag", flat=True).first()
            if existing is not None:
                return existing


def owner_tags_for_allowlisted_users() -> None:
    """Tags for every active user with an allowlist who has none yet (when a portal CA becomes an issuer)."""
    waiting = (
        get_user_model().objects.filter(is_active=True, allowlist__isnull=False, serial_tag__isnull=True).distinct()
    )
    for user in waiting:
        owner_tag(user)


# -- At Cloudflare: upload, hostname associations, removal (FACTS.md §3, §4) ---------------------------------------

# The validity the portal proposes for a CA it makes: long enough that rotations are rare, short of the maximum.
DEFAULT_VALIDITY_DAYS = 5 * 365
CA_QUOTA_REACHED = (
    "The Cloudflare account already holds its limit of uploaded CAs (5 unless Cloudflare raised it; error 1489). "
    "Remove a CA it no longer needs (a retired portal CA: python manage.py portal_ca remove ID), or ask your "
    "Cloudflare account team for a higher limit."
)
UPLOAD_UNKNOWN = (
    "The upload may have reached Cloudflare, but no answer came and the account's list does not show it (yet). "
    "Nothing was recorded. Try again in a minute: the portal looks for an earlier upload before uploading again."
)
# Longer than an upload or a removal can take (a worker waits up to a minute for the call budget, then 3 calls).
CHANGE_LOCK_SECONDS = 300
# Certificates that may still be used at the edge (and so stop working when their CA is removed).
IN_USE = Certificate.HOLDS_A_SLOT


def authority_upload(
    *, authority: CertificateAuthority, origin: Origin, interactive: bool = False
) -> CertificateAuthority:
    """Make Cloudflare trust the CA: upload its certificate to the account (`ca: true`), then associate
    PORTAL_API_HOSTNAMES with it (the PUT replaces the set for this CA); the CA becomes `trusted`.

    The upload has no idempotency key, so the account's uploads are listed first and an earlier upload of this
    certificate is used instead of making a second one: a retry after any interruption, an ambiguous answer or a
    killed process included, never uploads twice. On a CA that is trusted already it associates the hostnames
    again (what check_cloudflare asks for when they went missing). `interactive`: a person waits (the admin), so
    the web request's deadline applies; each step done is kept, and trying again carries on from there.
    """
    ca = _fresh(authority)
    if ca.status == CertificateAuthority.Status.REMOVED:
        # Final: a CA is removed when it is done with, or because its key must no longer be trusted.
        raise InvalidTransitionError(
            f"The portal CA “{ca.name}” was removed from Cloudflare and stays removed; create or import a new CA."
        )
    now = timezone.now()
    _check_valid(ca, now, doing="upload")
    account_id = _account_id()
    client = get_cloudflare_client(wait_for_budget=not interactive)
    with _one_change_at_a_time(ca):
        with _at_cloudflare("upload the CA"):
            cloudflare_id = _existing_upload(client, account_id, ca) or _upload(client, account_id, ca)
            uploaded = cloudflare_id != ca.cloudflare_id
            ca = _record_upload(ca, cloudflare_id, now)
        with _at_cloudflare("associate the API hostnames with the CA"):
            client.put_hostname_associations(get_zone_id(), _api_hostnames(), mtls_certificate_id=cloudflare_id)
        with transaction.atomic():
            trusted = CertificateAuthority.objects.filter(
                pk=ca.pk, cloudflare_id=cloudflare_id, status=CertificateAuthority.Status.CREATED
            ).update(status=CertificateAuthority.Status.TRUSTED, updated_at=now)
            if trusted or uploaded:
                detail = {**_described(ca), "hostnames": _api_hostnames()}
                audit(AuditEvent.Action.CA_UPLOADED, origin, detail=detail)
                request_firewall_sync(get_zone_id())
    ca.refresh_from_db()
    return ca


def authority_remove(
    *, authority: CertificateAuthority, origin: Origin, force: bool = False, interactive: bool = False
) -> CertificateAuthority:
    """Stop Cloudflare trusting the CA: remove its hostname associations, then delete the upload (Cloudflare
    refuses the DELETE while they exist, FACTS.md §4); the CA becomes `removed`.

    Refused while it is a zone's issuer, and while certificates it signed are still in use, unless `force` (an
    admin's explicit choice: those certificates stop working at the edge). Each step can be repeated, so an
    interrupted removal is finished by asking again.
    """
    ca = _fresh(authority)
    if ca.status == CertificateAuthority.Status.REMOVED:
        raise InvalidTransitionError(f"The portal CA “{ca.name}” is removed from Cloudflare already.")
    with _one_change_at_a_time(ca):
        now = timezone.now()
        in_use = _check_can_be_removed(ca, now=now, force=force)
        account_id = _account_id()
        client = get_cloudflare_client(wait_for_budget=not interactive)
        with _at_cloudflare("remove the CA from Cloudflare"):
            cloudflare_id = ca.cloudflare_id or _existing_upload(client, account_id, ca)
            if cloudflare_id:
                _forget_upload(client, account_id, cloudflare_id)
        with transaction.atomic():
            removed = (
                CertificateAuthority.objects.filter(pk=ca.pk)
                .exclude(status=CertificateAuthority.Status.REMOVED)
                .update(status=CertificateAuthority.Status.REMOVED, updated_at=now)
            )
            if removed:
                detail = {**_described(ca), "cloudflare_id": cloudflare_id or "", "forced": force, "in_use": in_use}
                audit(AuditEvent.Action.CA_REMOVED, origin, detail=detail)
                request_firewall_sync(get_zone_id())
    ca.refresh_from_db()
    return ca


def _check_can_be_removed(ca: CertificateAuthority, *, now: datetime, force: bool) -> int:
    """Refuses while the CA issues for a zone or, unless forced, signed certificates still in use; returns those."""
    zones = list(ca.zones.values_list("zone_id", flat=True))
    if zones:
        raise InvalidTransitionError(
            f"The portal CA “{ca.name}” issues the certificates of zone {', '.join(zones)}: make another CA (or "
            "Cloudflare's managed CA) the zone's issuer first."
        )
    in_use = authority_certificates_in_use(ca, now=now).count()
    if in_use and not force:
        raise InvalidTransitionError(
            f"{in_use} certificate{'s' if in_use != 1 else ''} the portal CA “{ca.name}” signed "
            f"{'are' if in_use != 1 else 'is'} still active and unexpired, and would stop working at the edge. "
            "Wait until their owners have renewed them (they are emailed) or they expire, or remove it anyway "
            "(force) if they must stop working now."
        )
    return in_use


def authority_certificates_in_use(ca: CertificateAuthority, *, now: datetime) -> QuerySet[Certificate]:
    """The certificates this CA signed that a client may still present: not revoked, not expired."""
    return Certificate.objects.filter(authority=ca, status__in=IN_USE).filter(
        Q(expires_on__isnull=True) | Q(expires_on__gt=now)
    )


def _fresh(authority: CertificateAuthority) -> CertificateAuthority:
    return CertificateAuthority.objects.get(pk=authority.pk)


def _check_valid(ca: CertificateAuthority, now: datetime, *, doing: str) -> None:
    if ca.not_after <= now:
        raise PolicyError(
            f"The portal CA “{ca.name}” expired on {ca.not_after:%Y-%m-%d}: nothing it signs verifies, so the portal "
            f"does not {doing} it. Create or import a new CA."
        )
    if ca.not_before > now:
        raise PolicyError(f"The portal CA “{ca.name}” is valid only from {ca.not_before:%Y-%m-%d %H:%M} UTC.")


def _account_id() -> str:
    account_id: str = settings.CLOUDFLARE_ACCOUNT_ID
    if not account_id:
        raise PolicyError(
            "CLOUDFLARE_ACCOUNT_ID is not set: a portal CA is uploaded to the Cloudflare account (its id is on the "
            "account's overview page in the dashboard)."
        )
    return account_id


def _api_hostnames() -> list[str]:
    return [name.lower() for name in settings.PORTAL_API_HOSTNAMES]


def _described(ca: CertificateAuthority) -> dict[str, object]:
    return {"authority_id": ca.pk, "name": ca.name, "subject_key_identifier": ca.subject_key_identifier}


@contextmanager
def _at_cloudflare(step: str) -> Iterator[None]:
    """Cloudflare's errors as refusals that say what to do; the steps done before stay done."""
    try:
        yield
    except cf_errors.CAQuotaExceededError as exc:
        raise QuotaError(CA_QUOTA_REACHED) from exc
    except (cf_errors.AuthenticationError, cf_errors.PermissionDeniedError) as exc:
        raise ServiceError(
            f"Cloudflare refused to {step}: the API token needs Account: SSL and Certificates Edit "
            f"({first_message(exc)})."
        ) from exc
    except cf_errors.APIError as exc:
        if not exc.retryable:
            raise InvalidTransitionError(f"Cloudflare refused to {step}: {first_message(exc)}") from exc
        raise CloudflareUnavailableError(_unavailable(step)) from exc
    except cf_errors.CloudflareError as exc:
        raise CloudflareUnavailableError(_unavailable(step)) from exc


def _unavailable(step: str) -> str:
    return (
        f"Cloudflare did not answer, so the portal could not {step}. Try again soon: what was done is kept, and "
        "the next attempt carries on from there."
    )


def _existing_upload(client: CloudflareClient, account_id: str, ca: CertificateAuthority) -> str:
    """The id of this CA's upload at Cloudflare: the recorded one if Cloudflare still has it, else one found in
    the account's list (an upload whose answer was lost); "" when there is none."""
    if ca.cloudflare_id:
        try:
            client.get_mtls_certificate(account_id, ca.cloudflare_id)
        except cf_errors.NotFoundError:
            logger.warning("portal CA %s: Cloudflare no longer has upload %s", ca.pk, ca.cloudflare_id)
        else:
            return ca.cloudflare_id
    ours = x509.load_pem_x509_certificate(ca.certificate_pem.encode("ascii"))
    for record in client.list_mtls_certificates(account_id):
        if record.ca and _is_upload_of(record, ours):
            return record.id
    return ""


def _is_upload_of(record: MTLSCertificate, ours: x509.Certificate) -> bool:
    try:
        uploaded = x509.load_pem_x509_certificates(record.certificates.encode("utf-8"))
    except ValueError:
        uploaded = []
    if uploaded:
        return uploaded[0] == ours  # compares the DER encodings
    # An answer without the PEM: the serial (hex or decimal, FACTS.md §6) and the expiry together.
    same_expiry = record.expires_on is not None and int(record.expires_on.timestamp()) == int(
        ours.not_valid_after_utc.timestamp()
    )
    serial = record.serial_number.strip().lower()
    return same_expiry and any(_as_int(serial, base) == ours.serial_number for base in (16, 10))


def _as_int(text: str, base: int) -> int | None:
    try:
        return int(text, base)
    except ValueError:
        return None


@contextmanager
def _one_change_at_a_time(ca: CertificateAuthority) -> Iterator[None]:
    """One upload, removal or switch of issuer of a CA at a time. Two uploads at once (a double click, the admin and
    a command) would both find nothing listed and both upload; a CA made the issuer while its removal is under way
    would issue certificates nothing verifies. The second is refused until the first is done. The lock lives in the
    cache, which every process shares through Redis (REDIS_URL); it expires on its own if its holder dies."""
    key, holder = f"authority-change:{ca.pk}", secrets.token_hex(8)
    if not cache.add(key, holder, timeout=CHANGE_LOCK_SECONDS):
        raise InvalidTransitionError(
            f"The portal CA “{ca.name}” is being uploaded, removed or made an issuer right now; look at it again "
            "in a minute."
        )
    try:
        yield
    finally:
        if cache.get(key) == holder:
            cache.delete(key)


def _upload(client: CloudflareClient, account_id: str, ca: CertificateAuthority) -> str:
    # Only the issuing CA is uploaded, not its chain (FACTS.md §3: upload the issuing CA; bundles have tripped
    # other tools, FACTS.md §13.9).
    name = f"{ca.name} (mTLS portal CA {ca.subject_key_identifier[:8]})"
    try:
        return client.upload_mtls_certificate(account_id, certificates=ca.certificate_pem, name=name, ca=True).id
    except cf_errors.AmbiguousRequestError:
        found = _existing_upload(client, account_id, ca)
        if found:
            return found
        raise CloudflareUnavailableError(UPLOAD_UNKNOWN) from None


def _record_upload(ca: CertificateAuthority, cloudflare_id: str, now: datetime) -> CertificateAuthority:
    """Compare-and-set on the id read before the calls: a removal or another upload meanwhile wins."""
    recorded = (
        CertificateAuthority.objects.filter(pk=ca.pk, cloudflare_id=ca.cloudflare_id)
        .exclude(status=CertificateAuthority.Status.REMOVED)
        .update(cloudflare_id=cloudflare_id, updated_at=now)
    )
    if not recorded:
        raise InvalidTransitionError(f"The portal CA “{ca.name}” was changed meanwhile; look at it and try again.")
    return _fresh(ca)


def _forget_upload(client: CloudflareClient, account_id: str, cloudflare_id: str) -> None:
    """Associations first, then the upload (the seed document's order); a step Cloudflare finds done is done."""
    try:
        client.put_hostname_associations(get_zone_id(), [], mtls_certificate_id=cloudflare_id)
        client.delete_mtls_certificate(account_id, cloudflare_id)
    except cf_errors.NotFoundError:
        logger.info("upload %s is gone from Cloudflare already", cloudflare_id)


# -- The zone's issuer ------------------------------------------------------------------------------------------

MANAGED_CA = "Cloudflare's managed CA"


@dataclass(frozen=True)
class IssuerChange:
    zone_id: str
    old: CertificateAuthority | None
    new: CertificateAuthority | None
    # What the admin should know: a CA that ends before the longest validity, the managed CA's zone capacity.
    notes: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return _pk(self.old) != _pk(self.new)

    def summary(self) -> str:
        if not self.changed:
            return f"Zone {self.zone_id} issues with {issuer_name(self.new)} already; nothing changed."
        return (
            f"Zone {self.zone_id} now issues with {issuer_name(self.new)} (was {issuer_name(self.old)}). "
            "Certificates issued before keep their issuer until they expire or are replaced."
        )


def issuer_name(ca: CertificateAuthority | None) -> str:
    return MANAGED_CA if ca is None else f"the portal CA “{ca.name}”"


def _issuer_label(ca: CertificateAuthority | None) -> str:
    """Short enough for the audit log's status columns; the detail names the CAs."""
    return "managed CA" if ca is None else f"portal CA {ca.pk}"


def _pk(ca: CertificateAuthority | None) -> int | None:
    return None if ca is None else ca.pk


def zone_set_issuer(*, zone_id: str, authority: CertificateAuthority | None, origin: Origin) -> IssuerChange:
    """The CA that signs the zone's new certificates: a trusted portal CA, or None for Cloudflare's managed CA.

    Existing certificates keep their issuer. When a portal CA stops being the issuer, the owners of its
    certificates still in use are emailed to renew (rotation_notices_send), once.
    """
    now = timezone.now()
    notes = _issuer_notes(authority, zone_id=zone_id, now=now)
    with _one_change_at_a_time(authority) if authority is not None else nullcontext(), transaction.atomic():
        zone = Zone.objects.select_for_update().get(pk=zone_with_marker(zone_id).pk)
        new = None
        if authority is not None:
            new = _fresh(authority)
            _check_can_be_issuer(new, now)
        old = zone.issuer
        change = IssuerChange(zone_id=zone_id, old=old, new=new, notes=notes)
        if not change.changed:
            return change
        Zone.objects.filter(pk=zone.pk).update(issuer=new)
        if new is not None:
            owner_tags_for_allowlisted_users()
        audit(
            AuditEvent.Action.ZONE_ISSUER_CHANGED,
            origin,
            old=_issuer_label(old),
            new=_issuer_label(new),
            detail={
                "zone_id": zone_id,
                "old_authority_id": _pk(old),
                "new_authority_id": _pk(new),
            },
        )
        request_firewall_sync(zone_id)
        if old is not None:
            request_rotation_notices()
    return change


def _check_can_be_issuer(ca: CertificateAuthority, now: datetime) -> None:
    if ca.status != CertificateAuthority.Status.TRUSTED:
        raise InvalidTransitionError(
            f"The portal CA “{ca.name}” is {ca.get_status_display().lower()}: certificates it signed would not "
            "verify at the edge. Upload it and associate the API hostnames first."
        )
    _check_valid(ca, now, doing="issue with")


def _issuer_notes(authority: CertificateAuthority | None, *, zone_id: str, now: datetime) -> tuple[str, ...]:
    if authority is None:
        held = Certificate.objects.filter(
            zone_id=zone_id, authority__isnull=True, status__in=Certificate.HOLDS_A_SLOT
        ).count()
        return (
            f"Cloudflare's managed CA holds at most {settings.CLOUDFLARE_ZONE_CAPACITY} certificates in the zone "
            f"(CLOUDFLARE_ZONE_CAPACITY); {held} of them are taken.",
        )
    longest = max(settings.CERTIFICATE_VALIDITY_CHOICES)
    if authority.not_after < now + timedelta(days=longest):
        return (
            f"The portal CA “{authority.name}” expires on {authority.not_after:%Y-%m-%d}, sooner than the "
            f"{longest} days a certificate may last: certificates it signs end with it. Add its successor in time.",
        )
    return ()


# -- Rotation: telling owners to renew, removing retired CAs ------------------------------------------------------


def rotation_notices_send(*, now: datetime | None = None) -> int:
    """Email each owner of certificates, still in use, signed by a portal CA that no longer issues for their zone:
    which certificates, and until when they work (their expiry, or the CA's). Once per certificate: the audit log
    records each notice with the certificates it named. Returns the number of emails sent."""
    now = now or timezone.now()
    issuers = dict(Zone.objects.values_list("zone_id", "issuer_id"))
    waiting = (
        Certificate.objects.filter(authority__isnull=False, status__in=Certificate.USABLE, expires_on__gt=now)
        .exclude(pk__in=_notified_certificate_ids())
        .select_related("owner", "authority")
        .defer("csr", "certificate_pem", *(f"authority__{name}" for name in CertificateAuthority.BULK_FIELDS))
        .order_by("owner_id", "expires_on")
    )
    by_owner: dict[int, list[Certificate]] = {}
    for row in waiting:
        if issuers.get(row.zone_id) != row.authority_id:
            by_owner.setdefault(row.owner_id, []).append(row)
    return sum(_send_rotation_notice(rows) for rows in by_owner.values())


def _notified_certificate_ids() -> set[int]:
    notices = AuditEvent.objects.filter(action=AuditEvent.Action.ROTATION_NOTICE_SENT).values_list("detail", flat=True)
    return {int(pk) for detail in notices for pk in detail.get("certificate_ids", ())}


def _send_rotation_notice(rows: list[Certificate]) -> int:
    owner = rows[0].owner
    try:
        with transaction.atomic():
            # Two workers sending at once: the second waits here, then finds the notice recorded.
            locked = list(Certificate.objects.select_for_update().filter(pk__in=[row.pk for row in rows]))
            if _notified_certificate_ids() & {row.pk for row in locked}:
                return 0
            audit(
                AuditEvent.Action.ROTATION_NOTICE_SENT,
                SYSTEM,
                detail={
                    "user_id": owner.pk,
                    "authority_ids": sorted({row.authority_id for row in rows if row.authority_id}),
                    "certificate_ids": [row.pk for row in rows],
                },
            )
            if owner.email:
                # Sent inside the transaction: a failed send records nothing, and the next run tries again.
                _mail_rotation_notice(owner.email, rows)
    except Exception:
        logger.exception("could not email user %s to renew certificates of a retired portal CA", owner.pk)
        return 0
    return 1 if owner.email else 0


def _mail_rotation_notice(address: str, rows: list[Certificate]) -> None:
    context = {
        "certificates": [
            {"certificate": row, "works_until": min(row.expires_on or row.authority.not_after, row.authority.not_after)}
            for row in rows
            if row.authority is not None
        ],
        "url": f"{settings.PORTAL_BASE_URL}{reverse('certificates:dashboard')}",
    }
    body = render_to_string("certificates/email/issuer_rotation.txt", context)
    count = len(rows)
    subject = f"Renew {count} client certificate{'s' if count != 1 else ''}: the portal's CA is changing"
    send_mail(subject, body, None, [address])


def authorities_retire(*, now: datetime | None = None) -> list[int]:
    """Remove from Cloudflare each retired portal CA (trusted, a zone's issuer once and no longer, not `created`)
    whose last certificate in use is gone: expired, revoked or replaced. Returns the ids removed."""
    now = now or timezone.now()
    changes = AuditEvent.objects.filter(action=AuditEvent.Action.ZONE_ISSUER_CHANGED).values_list("detail", flat=True)
    replaced = {detail.get("old_authority_id") for detail in changes} - {None}
    in_use = Certificate.objects.filter(authority__isnull=False, status__in=IN_USE).filter(
        Q(expires_on__isnull=True) | Q(expires_on__gt=now)
    )
    retired = (
        CertificateAuthority.objects.filter(status=CertificateAuthority.Status.TRUSTED, zones__isnull=True)
        .filter(pk__in=replaced)
        .exclude(pk__in=in_use.values("authority_id"))
    )
    removed = []
    for ca in retired:
        try:
            authority_remove(authority=ca, origin=SYSTEM)
        except ServiceError as exc:
            logger.warning("portal CA %s (%s) is retired but could not be removed: %s", ca.pk, ca.name, exc.message)
        else:
            logger.info("portal CA %s (%s) removed from Cloudflare: its last certificate is gone", ca.pk, ca.name)
            removed.append(ca.pk)
    return removed


# How long before a trusted CA's end the log warns, every hour, that its certificates will stop working.
EXPIRY_WARNING_DAYS = 30


def authorities_expiry_warnings(*, now: datetime | None = None) -> list[str]:
    """Log a warning for each trusted portal CA that ends within EXPIRY_WARNING_DAYS; returns the warnings."""
    now = now or timezone.now()
    warnings = []
    ending = CertificateAuthority.objects.filter(
        status=CertificateAuthority.Status.TRUSTED, not_after__lte=now + timedelta(days=EXPIRY_WARNING_DAYS)
    ).prefetch_related("zones")
    for ca in ending:
        zones = [zone.zone_id for zone in ca.zones.all()]
        in_use = authority_certificates_in_use(ca, now=now).count()
        what = f"the issuer of zone {', '.join(zones)}" if zones else "retired"
        warning = (
            f"Portal CA {ca.pk} “{ca.name}” ({what}) expires on {ca.not_after:%Y-%m-%d %H:%M} UTC with {in_use} "
            "certificate(s) in use, which stop working then"
        )
        if zones:
            warning += ": add a new CA, upload it and make it the issuer (README, “Rotating a portal CA”)"
        logger.warning(warning)
        warnings.append(warning)
    return warnings
