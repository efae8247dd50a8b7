"""Portal CAs (DESIGN.md "Issuers", 2): made or imported here, their keys kept encrypted (certificates.authority).

Uploading to Cloudflare, hostname associations, removal and the zone's choice of issuer are further down.
"""

from __future__ import annotations

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from certificates.authority import keystore, pki, serials
from certificates.authority.keystore import KeystoreError, SigningKey
from certificates.models import AuditEvent, CertificateAuthority, Zone
from certificates.services.audit import Origin, audit
from certificates.services.cleaning import clean_name
from certificates.services.errors import AuthorityUnavailableError, PolicyError


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
