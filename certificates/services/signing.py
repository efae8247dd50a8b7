"""Issuance by a portal CA (DESIGN.md "Issuers", 2): the portal signs the CSR itself, in the request, with no
Cloudflare call. The certificate verifies at the edge because the CA is uploaded and associated with the API
hostnames; the firewall sync that follows lets it through the portal's rules.
"""

from __future__ import annotations

import logging

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from certificates.authority import pki, serials
from certificates.csr import ValidatedCSR
from certificates.enqueue import request_firewall_sync
from certificates.models import AuditEvent, Certificate, CertificateAuthority, Zone
from certificates.policy import Subject, get_policy
from certificates.services.audit import Origin, audit
from certificates.services.authorities import authority_signing_key, owner_tag, zone_with_marker
from certificates.services.errors import AuthorityUnavailableError
from certificates.services.quotas import lock_user_for_issuance, refuse_known_key

logger = logging.getLogger(__name__)

KEY_LOCKED = (
    "Certificates cannot be issued right now: the portal CA's key cannot be unlocked (the operators must fix a "
    "setting; the portal's log says which). Nothing was issued; try again later."
)
NOT_READY = (
    "Certificates cannot be issued right now: the portal CA is not trusted by Cloudflare yet (staff must upload it). "
    "Nothing was issued; try again later."
)


def certificate_sign(
    *,
    user: User,
    validated: ValidatedCSR,
    validity_days: int,
    name: str,
    zone: Zone,
    authority: CertificateAuthority,
    origin: Origin,
) -> Certificate:
    """Sign the validated CSR with the zone's portal CA and record the certificate, active at once."""
    if authority.status != CertificateAuthority.Status.TRUSTED:
        raise AuthorityUnavailableError(NOT_READY)
    try:
        key = authority_signing_key(authority)  # before any lock: a missing setting refuses at once
    except AuthorityUnavailableError as exc:
        logger.error("portal CA %s cannot sign: %s", authority.pk, exc.message)  # for staff: names the setting
        raise AuthorityUnavailableError(KEY_LOCKED) from None
    ca_certificate = pki.load_certificate(authority.certificate_pem)
    public_key = x509.load_pem_x509_csr(validated.pem.encode("ascii")).public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise AssertionError("validate_csr admits EC and RSA keys only")  # a bug if reached
    policy = get_policy()
    if not zone.serial_marker:
        zone = zone_with_marker(zone.zone_id)
    with transaction.atomic():
        lock_user_for_issuance(user=user, policy=policy)
        refuse_known_key(zone_id=zone.zone_id, validated=validated)
        now = timezone.now()
        profile = pki.ClientProfile(
            subject=_subject_name(policy.subject_for(user)),
            serial=serials.new_serial(zone.serial_marker, owner_tag(user)),
            validity_days=validity_days,
            crl_url=crl_url(authority),
        )
        signed = pki.sign_client_certificate(
            authority=ca_certificate, key=key, public_key=public_key, profile=profile, now=now
        )
        certificate = Certificate.objects.create(
            owner=user,
            name=name.strip(),
            zone_id=zone.zone_id,
            authority=authority,
            status=Certificate.Status.ACTIVE,
            csr=validated.pem,
            public_key_sha256=validated.public_key_sha256,
            key_type=validated.key_type.id,
            common_name=validated.common_name,
            validity_days=validity_days,
            certificate_pem=pki.pem(signed),
            fingerprint_sha256=signed.fingerprint(hashes.SHA256()).hex(),
            serial_number=serials.serial_hex(signed.serial_number),
            issued_on=now,
            expires_on=signed.not_valid_after_utc,
        )
        audit(
            AuditEvent.Action.ISSUED,
            origin,
            certificate=certificate,
            old="",
            new=certificate.status,
            detail={
                "authority_id": authority.pk,
                "serial_number": certificate.serial_number,
                "fingerprint_sha256": certificate.fingerprint_sha256,
            },
        )
        request_firewall_sync(zone.zone_id)
    return certificate


def _subject_name(subject: Subject) -> x509.Name:
    parts = [
        (NameOID.ORGANIZATION_NAME, subject.organization),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, subject.organizational_unit),
        (NameOID.COMMON_NAME, subject.common_name),
    ]
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in parts if value])


def crl_url(authority: CertificateAuthority) -> str:
    """Where origins fetch the CA's CRL; written into every certificate it signs, so it must never change."""
    return f"{settings.PORTAL_BASE_URL}{reverse('certificates:crl', args=[authority.pk])}"
