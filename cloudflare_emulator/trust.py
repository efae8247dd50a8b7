"""Which CAs the zone trusts for a hostname's client certificates, and what the edge sees in a presented one.

FACTS.md §4: hostname associations say which CA validates client certificates on which hostname. Hostnames
associated without `mtls_certificate_id` use the Cloudflare managed CA; hostnames associated with an uploaded
certificate (`ca: true`) use that CA, and a hostname may have several. The emulator's one default: a zone that
never set the managed CA's hostnames trusts the managed CA on every hostname, so a fresh checkout works without
`check_cloudflare --fix`; once they are set (even to none), only on those.

The certificate must be signed directly by a trusted certificate (an uploaded intermediate signs its leaves
itself), and both must be within their validity. Chains presented by the client are not followed.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509

from . import client_certificates, mtls, pki
from .context import Context


@dataclass(frozen=True)
class TrustedCA:
    certificate: x509.Certificate
    managed: bool  # Cloudflare checks revocation for its managed CA only (FACTS.md §2)


@dataclass(frozen=True)
class PresentedCertificate:
    """The cf.tls_client_auth values of a presented certificate (FACTS.md §6)."""

    verified: bool
    revoked: bool
    fingerprint: str  # lowercase hex of the DER
    serial: str  # uppercase hex, no leading zeros
    issuer_ski: str  # uppercase hex; "" unless verified: only a trusted issuer is known for certain


def hostname_of(host: str) -> str:
    """The hostname a Host header names, as associations list it: lowercased, without a port or a trailing dot.
    Anything else in the header stays, so a malformed one matches no association."""
    name = host.strip().lower()
    if name.startswith("["):  # an IPv6 literal, [2001:db8::1]:8443
        return name[1 : name.find("]")] if "]" in name else ""
    return name.partition(":")[0].rstrip(".")


def managed_ca_applies(associations: dict[str, list[str]], hostname: str) -> bool:
    hostnames = associations.get(mtls.MANAGED_CA_KEY)
    return hostnames is None or hostname in hostnames


def trusted_cas(context: Context, hostname: str) -> list[TrustedCA]:
    associations: dict[str, list[str]] = context.zone()["hostname_associations"]
    trusted = []
    if managed_ca_applies(associations, hostname):
        trusted.append(TrustedCA(context.managed_ca().certificate, managed=True))
    for key, hostnames in associations.items():
        if key == mtls.MANAGED_CA_KEY or hostname not in hostnames:
            continue
        record = mtls.uploaded_certificate(context.state, key)
        if record is None or not record["ca"]:
            continue
        # The upload may be a bundle; each of its certificates is a CA (mtls.parse_upload checks CA:TRUE).
        bundle = x509.load_pem_x509_certificates(record["certificates"].encode("utf-8"))
        trusted.extend(TrustedCA(certificate, managed=False) for certificate in bundle)
    return trusted


def inspect(context: Context, hostname: str, certificate: x509.Certificate) -> PresentedCertificate:
    fingerprint = pki.fingerprint_sha256(certificate)
    trusted = trusted_cas(context, hostname)
    issuer = next((ca for ca in trusted if pki.issued_by(ca.certificate, certificate, context.now)), None)
    # FACTS.md §6: revoked means "valid but revoked", so it needs a verifying (managed) issuer.
    revoked = issuer is not None and issuer.managed and is_revoked_in_zone(context, fingerprint)
    return PresentedCertificate(
        verified=issuer is not None,
        revoked=revoked,
        fingerprint=fingerprint,
        serial=pki.serial_hex(certificate),
        issuer_ski=pki.key_identifier_hex(issuer.certificate) if issuer is not None else "",
    )


def is_revoked_in_zone(context: Context, fingerprint: str) -> bool:
    records = client_certificates.settled_certificates(context).values()
    return any(r["fingerprint_sha256"] == fingerprint and r["status"] == "revoked" for r in records)
