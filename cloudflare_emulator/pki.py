"""The emulator's managed CA: generated once, kept in the state, and used to sign CSRs for real."""

from __future__ import annotations

import datetime
import functools
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Cloudflare's managed client CA is an RSA CA ("Cloudflare Client CA Intermediate (RSA)", FACTS.md §5).
CA_KEY_SIZE = 2048
CA_LIFETIME = datetime.timedelta(days=3650 * 2)


@dataclass(frozen=True)
class ManagedCA:
    id: str
    name: str
    certificate: x509.Certificate
    private_key: CertificateIssuerPrivateKeyTypes


def utc(timestamp: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC)


def rfc3339(timestamp: float) -> str:
    return utc(timestamp).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_ca_record(now: float) -> dict[str, Any]:
    """A fresh CA as stored in the state: PEM strings only, so the file stays readable JSON."""
    account_tag = secrets.token_hex(16)
    name = f"Cloudflare Managed CA for account {account_tag}"
    key = rsa.generate_private_key(public_exponent=65537, key_size=CA_KEY_SIZE)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Cloudflare, Inc. (emulated)"),
            # A CN is at most 64 characters, so the account goes into the OU rather than the CN.
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, f"account {account_tag}"),
            x509.NameAttribute(NameOID.COMMON_NAME, "Cloudflare Managed CA (emulated)"),
        ]
    )
    # Backdate a day so certificates issued "now" by a test's injected clock are inside the CA's validity.
    not_before = utc(now) - datetime.timedelta(days=1)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return {
        "id": secrets.token_hex(16),
        "name": name,
        "certificate_pem": certificate.public_bytes(serialization.Encoding.PEM).decode("ascii"),
        "private_key_pem": key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode("ascii"),
    }


def load_ca(record: dict[str, Any]) -> ManagedCA:
    return ManagedCA(
        id=record["id"],
        name=record["name"],
        certificate=x509.load_pem_x509_certificate(record["certificate_pem"].encode("ascii")),
        private_key=_private_key(record["private_key_pem"]),
    )


@functools.lru_cache(maxsize=8)
def _private_key(pem: str) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    """Loading a key checks it, about 0.1 s for RSA: once per key, not once per certificate signed (the benchmarks and
    reconciliation's tests make thousands)."""
    key = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise TypeError("the stored emulator CA key is of an unsupported type")
    return key


class CsrError(ValueError):
    pass


def parse_csr(pem: str) -> x509.CertificateSigningRequest:
    try:
        csr = x509.load_pem_x509_csr(pem.encode("utf-8"))
    except ValueError as exc:
        raise CsrError("The CSR could not be parsed: it must be a PEM-encoded PKCS#10 request") from exc
    if not csr.is_signature_valid:
        raise CsrError("The CSR signature is invalid")
    return csr


def sign_csr(ca: ManagedCA, csr: x509.CertificateSigningRequest, now: float, validity_days: int) -> x509.Certificate:
    public_key = csr.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise CsrError("The CSR key must be RSA or ECDSA")
    not_before = utc(now)
    return (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(ca.certificate.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + datetime.timedelta(days=validity_days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=isinstance(public_key, rsa.RSAPublicKey),
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.private_key.public_key()),
            critical=False,
        )
        .sign(ca.private_key, hashes.SHA256())
    )


def subject_attribute(name: x509.Name, oid: x509.ObjectIdentifier) -> str:
    values = name.get_attributes_for_oid(oid)
    return str(values[0].value) if values else ""


def pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


def fingerprint_sha256(certificate: x509.Certificate) -> str:
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


def subject_key_identifier(certificate: x509.Certificate) -> str:
    try:
        return certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest.hex()
    except x509.ExtensionNotFound:
        return ""


def signature_name(certificate: x509.Certificate, style: str = "client") -> str:
    """ "SHA256WithRSA" / "SHA256WithECDSA" (client certificates) or "ECDSAWithSHA256" (mTLS uploads).

    FACTS.md §3 lists the upload algorithms as SHA*WithRSA and ECDSAWithSHA*.
    """
    digest = certificate.signature_hash_algorithm
    digest_name = digest.name.upper().replace("-", "") if digest is not None else "NONE"
    # The name describes the issuer's signature, so it depends on the CA's key, not the subject's.
    if isinstance(certificate.signature_algorithm_parameters, ec.ECDSA):
        return f"ECDSAWith{digest_name}" if style == "upload" else f"{digest_name}WithECDSA"
    return f"{digest_name}WithRSA"


def is_ca_certificate(certificate: x509.Certificate) -> bool:
    try:
        return certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def new_key_and_csr(common_name: str, key_type: str) -> tuple[str, x509.CertificateSigningRequest]:
    """What the dashboard does when it generates the key itself (FACTS.md §2): a key and a CSR for it."""
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    if key_type == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")
    return key_pem, csr


def csr_pem(csr: x509.CertificateSigningRequest) -> str:
    return csr.public_bytes(serialization.Encoding.PEM).decode("ascii")


def parse_certificate(pem_text: str) -> x509.Certificate:
    """A presented client certificate; ValueError when it is not one PEM certificate."""
    return x509.load_pem_x509_certificate(pem_text.encode("utf-8"))


def issued_by(issuer: x509.Certificate, certificate: x509.Certificate, now: float) -> bool:
    """What `cf.tls_client_auth.cert_verified` asks of one trusted CA: it signed the certificate directly, and both
    are within their validity at `now`."""
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    moment = utc(now)
    return all(c.not_valid_before_utc <= moment <= c.not_valid_after_utc for c in (certificate, issuer))


def serial_hex(certificate: x509.Certificate) -> str:
    """`cf.tls_client_auth.cert_serial`: uppercase hex without leading zeros (FACTS.md §6)."""
    return format(certificate.serial_number, "X")


def key_identifier_hex(issuer: x509.Certificate) -> str:
    """`cf.tls_client_auth.cert_issuer_ski` for certificates `issuer` signed: its Subject Key Identifier in
    uppercase hex; for a CA without the extension, the identifier RFC 5280 derives from its key (as the portal's
    certificates/authority/pki.py assumes; Cloudflare does not document this case)."""
    try:
        digest = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        digest = x509.SubjectKeyIdentifier.from_public_key(issuer.public_key()).digest
    return digest.hex().upper()
