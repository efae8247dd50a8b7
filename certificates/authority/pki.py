"""Making, importing and using a portal CA with `cryptography`.

The certificate profile follows RFC 5280 and what Cloudflare accepts for an uploaded CA (FACTS.md §3: CA:TRUE, an
RSA or ECDSA signature with SHA-256 or better).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certificates.authority.keystore import SigningKey

# The choices offered when the portal makes a CA. P-256 is the default: small certificates and fast signatures.
ALGORITHMS: dict[str, str] = {
    "ec-p256": "EC P-256",
    "ec-p384": "EC P-384",
    "rsa-2048": "RSA 2048",
    "rsa-3072": "RSA 3072",
    "rsa-4096": "RSA 4096",
}
DEFAULT_ALGORITHM = "ec-p256"
MIN_CA_VALIDITY_DAYS = 30
MAX_CA_VALIDITY_DAYS = 20 * 365
# A certificate's notBefore is set this far in the past, so that a client whose clock is a little behind can use
# it at once.
BACKDATE = datetime.timedelta(minutes=5)
# Cloudflare accepts these signature hashes for an uploaded CA (FACTS.md §3); SHA-1 is refused here on purpose.
ACCEPTED_HASHES = (hashes.SHA256, hashes.SHA384, hashes.SHA512)


class AuthorityError(ValueError):
    """A CA cannot be made or imported as asked; the message says why, in words for the admin."""


@dataclass(frozen=True)
class Authority:
    """A CA certificate with what the portal records about it."""

    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]  # the issuers above it, nearest first; empty for a root
    algorithm: str

    @property
    def subject_key_identifier(self) -> str:
        return subject_key_identifier(self.certificate)

    @property
    def certificate_pem(self) -> str:
        return pem(self.certificate)

    @property
    def chain_pem(self) -> str:
        return "".join(pem(certificate) for certificate in self.chain)


def pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


def load_certificate(pem_text: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem_text.encode("ascii"))


def crl_der(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(serialization.Encoding.DER)


def crl_pem(der: bytes) -> str:
    return x509.load_der_x509_crl(der).public_bytes(serialization.Encoding.PEM).decode("ascii")


def subject_key_identifier(certificate: x509.Certificate) -> str:
    """Uppercase hex, as ``cf.tls_client_auth.cert_issuer_ski`` shows it (FACTS.md §6)."""
    try:
        return certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest.hex().upper()
    except x509.ExtensionNotFound:
        return x509.SubjectKeyIdentifier.from_public_key(certificate.public_key()).digest.hex().upper()


def new_key(algorithm: str) -> SigningKey:
    if algorithm == "ec-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm == "ec-p384":
        return ec.generate_private_key(ec.SECP384R1())
    if algorithm in ("rsa-2048", "rsa-3072", "rsa-4096"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(algorithm.split("-")[1]))
    raise AuthorityError(f"Unknown key algorithm {algorithm!r}; choose one of {', '.join(ALGORITHMS)}.")


def _hash_for(key: SigningKey) -> hashes.SHA256 | hashes.SHA384:
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size > 256:
        return hashes.SHA384()
    return hashes.SHA256()


def create_authority(
    *, common_name: str, organization: str, algorithm: str, validity_days: int, now: datetime.datetime
) -> tuple[Authority, SigningKey]:
    """A new self-signed issuing CA, restricted to signing client certificates and CRLs (pathLen 0)."""
    if not common_name.strip():
        raise AuthorityError("The CA needs a name.")
    if not MIN_CA_VALIDITY_DAYS <= validity_days <= MAX_CA_VALIDITY_DAYS:
        raise AuthorityError(
            f"A CA can be valid for {MIN_CA_VALIDITY_DAYS} to {MAX_CA_VALIDITY_DAYS} days, not {validity_days}."
        )
    key = new_key(algorithm)
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name.strip()[:64])]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization[:64]))
    name = x509.Name(attributes)
    public_key = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=validity_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key), critical=False)
        .sign(key, _hash_for(key))
    )
    return Authority(certificate=certificate, chain=(), algorithm=algorithm), key


def algorithm_of(key: SigningKey) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        names = {"secp256r1": "ec-p256", "secp384r1": "ec-p384"}
        if key.curve.name not in names:
            raise AuthorityError(f"EC keys on {key.curve.name} are not supported; use P-256 or P-384.")
        return names[key.curve.name]
    if key.key_size not in (2048, 3072, 4096):
        raise AuthorityError(f"RSA keys of {key.key_size} bits are not supported; use 2048, 3072 or 4096.")
    return f"rsa-{key.key_size}"


def import_authority(
    *, chain_pem: str, key_pem: str, password: str | None, now: datetime.datetime
) -> tuple[Authority, SigningKey]:
    """An existing intermediate (first in `chain_pem`, its issuers after it) and its private key, checked:
    a CA that may sign certificates, valid now, its key matching, its issuers signing it."""
    try:
        certificates = x509.load_pem_x509_certificates(chain_pem.encode("utf-8"))
    except ValueError:
        raise AuthorityError("The chain could not be read: paste PEM certificates, the CA first.") from None
    try:
        key = serialization.load_pem_private_key(key_pem.encode("utf-8"), password=(password or "").encode() or None)
    except (ValueError, TypeError):
        raise AuthorityError(
            "The private key could not be read: paste a PEM private key, and its password if it is encrypted."
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise AuthorityError("The private key must be an EC or RSA key.")
    ca, issuers = certificates[0], tuple(certificates[1:])
    _check_can_issue(ca, now)
    if ca.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo):
        raise AuthorityError("The private key does not belong to the first certificate of the chain.")
    _check_chain(ca, issuers)
    return Authority(certificate=ca, chain=issuers, algorithm=algorithm_of(key)), key


def _check_can_issue(ca: x509.Certificate, now: datetime.datetime) -> None:
    try:
        constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise AuthorityError("The first certificate is not a CA (basicConstraints CA:TRUE is required by Cloudflare).")
    try:
        usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
        if not usage.key_cert_sign:
            raise AuthorityError("The CA's key usage does not allow signing certificates (keyCertSign).")
    except x509.ExtensionNotFound:
        pass
    if not isinstance(ca.signature_hash_algorithm, ACCEPTED_HASHES):
        raise AuthorityError("The CA is signed with SHA-1 or an unknown hash; Cloudflare needs SHA-256 or better.")
    if not ca.not_valid_before_utc <= now < ca.not_valid_after_utc:
        raise AuthorityError(
            f"The CA is not valid now (valid from {ca.not_valid_before_utc:%Y-%m-%d} "
            f"to {ca.not_valid_after_utc:%Y-%m-%d})."
        )


def _check_chain(ca: x509.Certificate, issuers: tuple[x509.Certificate, ...]) -> None:
    child = ca
    for issuer in issuers:
        try:
            child.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature):
            raise AuthorityError(
                f"{child.subject.rfc4514_string()} is not signed by the next certificate of the chain; "
                "paste the chain in order, the CA first, then its issuers."
            ) from None
        child = issuer


@dataclass(frozen=True)
class ClientProfile:
    """What goes into a client certificate besides the key: all decided by the portal, none by the CSR."""

    subject: x509.Name
    serial: int
    validity_days: int
    crl_url: str


def sign_client_certificate(
    *,
    authority: x509.Certificate,
    key: SigningKey,
    public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
    profile: ClientProfile,
    now: datetime.datetime,
) -> x509.Certificate:
    """A TLS client certificate: clientAuth only, CA:FALSE (critical), key identifiers, the CRL's address."""
    not_after = min(now + datetime.timedelta(days=profile.validity_days), authority.not_valid_after_utc)
    is_rsa = isinstance(public_key, rsa.RSAPublicKey)
    return (
        x509.CertificateBuilder()
        .subject_name(profile.subject)
        .issuer_name(authority.subject)
        .public_key(public_key)
        .serial_number(profile.serial)
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                # RSA key exchange in TLS 1.2 uses the key to decrypt; EC keys never do.
                key_encipherment=is_rsa,
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
        .add_extension(_authority_key_identifier(authority, key), critical=False)
        .add_extension(
            x509.CRLDistributionPoints(
                [
                    x509.DistributionPoint(
                        full_name=[x509.UniformResourceIdentifier(profile.crl_url)],
                        relative_name=None,
                        reasons=None,
                        crl_issuer=None,
                    )
                ]
            ),
            critical=False,
        )
        .sign(key, _hash_for(key))
    )


def _authority_key_identifier(authority: x509.Certificate, key: SigningKey) -> x509.AuthorityKeyIdentifier:
    """The CA's own subject key identifier when it has one (an imported CA's may not be the SHA-1 of its key),
    so that the leaf's AKI and Cloudflare's cert_issuer_ski name the same value."""
    try:
        ski = authority.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key())
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


@dataclass(frozen=True)
class RevokedEntry:
    serial: int
    revoked_at: datetime.datetime
    # certificateHold (RFC 5280 §5.3.1): suspended, not revoked for good; the owner's account is deactivated, and
    # the entry leaves the next CRL if it is activated again.
    on_hold: bool = False


_HOLD: list[x509.Extension[x509.ExtensionType]] = [
    x509.Extension(x509.CRLReason.oid, False, x509.CRLReason(x509.ReasonFlags.certificate_hold))
]


def build_crl(
    *,
    authority: x509.Certificate,
    key: SigningKey,
    revoked: Iterable[RevokedEntry],
    number: int,
    this_update: datetime.datetime,
    next_update: datetime.datetime,
) -> x509.CertificateRevocationList:
    """A CRL of the CA's revoked certificates, signed by the CA, with its number and the time of the next one."""
    # The list is given to the builder whole: add_revoked_certificate copies the list it has at each call, which
    # makes a CRL of n entries cost n² (0.2 s for 10,000 entries instead of about 0.1 s).
    entries = [
        x509.RevokedCertificateBuilder(
            serial_number=entry.serial, revocation_date=entry.revoked_at, extensions=_HOLD if entry.on_hold else []
        ).build()
        for entry in revoked
    ]
    builder = x509.CertificateRevocationListBuilder(
        issuer_name=authority.subject,
        last_update=this_update,
        next_update=next_update,
        extensions=[
            x509.Extension(x509.CRLNumber.oid, False, x509.CRLNumber(number)),
            x509.Extension(x509.AuthorityKeyIdentifier.oid, False, _authority_key_identifier(authority, key)),
        ],
        revoked_certificates=entries,
    )
    return builder.sign(key, _hash_for(key))
