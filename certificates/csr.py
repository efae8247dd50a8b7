"""Server-side checks of a CSR before anything is sent to Cloudflare.

Each failure raises CSRError with a message that names the problem, so the user can fix it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID, ObjectIdentifier

from certificates.policy import MAX_RSA_BITS, MIN_RSA_BITS, CertificatePolicy, KeyType, Subject

PEM_BLOCK = re.compile(
    r"-----BEGIN (NEW )?CERTIFICATE REQUEST-----\s+[A-Za-z0-9+/=\s]+?-----END (NEW )?CERTIFICATE REQUEST-----"
)
PRIVATE_KEY_MARKER = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")
SUBJECT_OIDS = {
    NameOID.COMMON_NAME: "CN",
    NameOID.ORGANIZATION_NAME: "O",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
}
# PKCS#9 extensionRequest: the attribute that carries requested extensions, checked one by one below.
EXTENSION_REQUEST = ObjectIdentifier("1.2.840.113549.1.9.14")
# Well-known OIDs cryptography has no name for.
OID_NAMES = {ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE: "anyExtendedKeyUsage"}
# RFC 5280 bit names, as OpenSSL prints them (cryptography's attribute names differ).
KEY_USAGE_BITS = {
    "digital_signature": "digitalSignature",
    "content_commitment": "nonRepudiation",
    "key_encipherment": "keyEncipherment",
    "data_encipherment": "dataEncipherment",
    "key_agreement": "keyAgreement",
    "key_cert_sign": "keyCertSign",
    "crl_sign": "cRLSign",
}


class CSRError(ValueError):
    """The CSR cannot be accepted; the message says why."""


@dataclass(frozen=True)
class ValidatedCSR:
    pem: str
    key_type: KeyType
    common_name: str
    public_key_sha256: str


def validate_csr(pem: str, *, policy: CertificatePolicy, subject: Subject) -> ValidatedCSR:
    text = _single_pem_block(pem, policy.max_csr_bytes)
    request = _parse(text)
    if not request.is_signature_valid:
        raise CSRError("The CSR's signature does not verify: it was not signed by the key it contains.")
    key_type = _allowed_key_type(request, policy)
    _check_subject(request.subject, subject)
    _check_attributes(request)
    _check_no_ca_rights(request)
    _check_granted_extensions(request, policy)
    public_key_der = request.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return ValidatedCSR(
        pem=text,
        key_type=key_type,
        common_name=subject.common_name,
        public_key_sha256=hashlib.sha256(public_key_der).hexdigest(),
    )


def public_key_sha256_of_certificate(pem: str) -> str:
    certificate = x509.load_pem_x509_certificate(pem.encode())
    der = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


@dataclass(frozen=True)
class CertificateFacts:
    """What the portal records of a certificate it did not issue, read from the certificate itself."""

    fingerprint_sha256: str
    public_key_sha256: str
    key_type: KeyType
    common_name: str
    serial_number: str
    not_before: datetime
    not_after: datetime


def certificate_facts(pem: str, *, policy: CertificatePolicy) -> CertificateFacts:
    """Parse a certificate PEM; CSRError when it cannot be parsed or its key is not one the policy allows.

    The fingerprint is the SHA-256 of the DER, what cf.tls_client_auth.cert_fingerprint_sha256 compares
    (lowercase hex); the serial is lowercase hex, as Cloudflare's API reports it.
    """
    try:
        certificate = x509.load_pem_x509_certificate(pem.encode())
        key = certificate.public_key()
    except (UnsupportedAlgorithm, ValueError):
        raise CSRError("The certificate could not be parsed, or its key type is not supported.") from None
    common_names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return CertificateFacts(
        fingerprint_sha256=certificate.fingerprint(hashes.SHA256()).hex(),
        public_key_sha256=public_key_sha256_of_certificate(pem),
        key_type=allowed_key_type(key, policy),
        common_name=str(common_names[0].value) if common_names else "",
        serial_number=format(certificate.serial_number, "x"),
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
    )


def _single_pem_block(pem: str, max_bytes: int) -> str:
    if not isinstance(pem, str) or not pem.strip():
        raise CSRError("The CSR is empty.")
    try:
        size = len(pem.encode())
    except UnicodeEncodeError:
        raise CSRError("The CSR contains characters that are not text; paste the PEM exactly.") from None
    if size > max_bytes:
        raise CSRError(f"The CSR is larger than {max_bytes} bytes; a certificate request is much smaller.")
    if PRIVATE_KEY_MARKER.search(pem):
        # Someone pasted their key: refuse without echoing any of it back.
        raise CSRError("That is a private key, not a CSR. Never share a private key: paste only the CSR.")
    blocks = PEM_BLOCK.findall(pem)
    if not blocks:
        raise CSRError("The CSR must be PEM text starting with -----BEGIN CERTIFICATE REQUEST-----.")
    if len(blocks) > 1:
        raise CSRError("Paste exactly one certificate request.")
    match = PEM_BLOCK.search(pem)
    assert match is not None
    # Cloudflare wants "newline-encoded" PEM (FACTS.md §2): normalise line endings and the trailing newline.
    return match.group(0).replace("\r\n", "\n").strip() + "\n"


def _parse(text: str) -> x509.CertificateSigningRequest:
    try:
        return x509.load_pem_x509_csr(text.encode())
    except ValueError:
        raise CSRError("The CSR could not be parsed: the PEM text is damaged or not a PKCS#10 request.") from None


def _allowed_key_type(request: x509.CertificateSigningRequest, policy: CertificatePolicy) -> KeyType:
    try:
        key = request.public_key()
    except (UnsupportedAlgorithm, ValueError):
        raise CSRError("The CSR's public key type is not supported.") from None
    return allowed_key_type(key, policy)


def allowed_key_type(key: object, policy: CertificatePolicy) -> KeyType:
    """The policy's key type for a public key (of a CSR, or of a certificate staff adopt); CSRError if none."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        key_type = policy.key_type("ec", key.curve.key_size) if key.curve.name in ("secp256r1", "secp384r1") else None
        if key_type is None:
            raise CSRError(f"The elliptic curve {key.curve.name} is not allowed; use P-256 or P-384.")
        return key_type
    if isinstance(key, rsa.RSAPublicKey):
        if not MIN_RSA_BITS <= key.key_size <= MAX_RSA_BITS:
            raise CSRError(f"An RSA key of {key.key_size} bits is not allowed; use 2048, 3072 or 4096 bits.")
        key_type = policy.key_type("rsa", key.key_size)
        if key_type is None:
            raise CSRError(f"An RSA key of {key.key_size} bits is not allowed; use 2048, 3072 or 4096 bits.")
        return key_type
    raise CSRError(f"{type(key).__name__.replace('PublicKey', '')} keys are not allowed; use ECDSA P-256 or RSA.")


def _check_subject(actual: x509.Name, expected: Subject) -> None:
    wanted = {"CN": expected.common_name, "O": expected.organization, "OU": expected.organizational_unit}
    wanted = {key: value for key, value in wanted.items() if value}
    found: dict[str, str] = {}
    for rdn in actual.rdns:
        for attribute in rdn:
            label = SUBJECT_OIDS.get(attribute.oid)
            if label is None:
                name = _readable(attribute.oid)
                raise CSRError(f"The subject must contain only {_describe(wanted)}; remove {name}.")
            if label in found:
                raise CSRError(f"The subject has {label} twice; it must contain only {_describe(wanted)}.")
            found[label] = str(attribute.value)
    if found != wanted:
        raise CSRError(
            f"The subject must be exactly {_describe(wanted)}, but the CSR has {_describe(found) or 'none'}."
        )


def _describe(fields: dict[str, str]) -> str:
    return ", ".join(f"{key}={value}" for key, value in fields.items())


def _readable(oid: ObjectIdentifier) -> str:
    name = OID_NAMES.get(oid, oid._name)
    return oid.dotted_string if not name or name == "Unknown OID" else name


def _check_attributes(request: x509.CertificateSigningRequest) -> None:
    try:
        attributes = list(request.attributes)
    except ValueError:
        raise CSRError("The CSR's attributes could not be read.") from None
    # Only the extension request may be there; challengePassword and the like mean nothing to the portal.
    # Named, never echoed: a challengePassword is a secret.
    refused = [_readable(a.oid) for a in attributes if a.oid != EXTENSION_REQUEST]
    if refused:
        raise CSRError(
            f"The CSR carries attributes the portal does not accept: {', '.join(refused)}. Make it without them."
        )


def _requested_extensions(request: x509.CertificateSigningRequest) -> x509.Extensions:
    try:
        return request.extensions
    except (ValueError, x509.DuplicateExtension):
        raise CSRError("The CSR's requested extensions could not be read.") from None


def _check_granted_extensions(request: x509.CertificateSigningRequest, policy: CertificatePolicy) -> None:
    refused: list[str] = []
    for extension in _requested_extensions(request):
        name = _readable(extension.oid)
        granted = policy.granted_values(name)
        values = _requested_values(extension.value)
        if granted is None or values is None:
            refused.append(name)
        else:
            refused.extend(f"{name} {value}" for value in values if value not in granted)
    if refused:
        raise CSRError(
            f"The CSR requests extensions the portal does not grant: {', '.join(refused)}. "
            "Cloudflare sets a client certificate's extensions itself, so make the CSR without them "
            f"(the portal's openssl command does); {_describe_grants(policy)}."
        )


def _describe_grants(policy: CertificatePolicy) -> str:
    if not policy.granted_extensions:
        return "it may request none"
    grants = "; ".join(f"{e.name} {', '.join(e.values)}" for e in policy.granted_extensions)
    return f"the most it may request is {grants}"


def _requested_values(value: x509.ExtensionType) -> list[str] | None:
    """What the extension asks for, in OpenSSL's names; None for extensions whose values the policy cannot judge."""
    if isinstance(value, x509.BasicConstraints):
        return ["CA:TRUE" if value.ca else "CA:FALSE"]
    if isinstance(value, x509.KeyUsage):
        bits = [label for attribute, label in KEY_USAGE_BITS.items() if getattr(value, attribute)]
        # encipherOnly and decipherOnly exist only with keyAgreement; cryptography raises when asked otherwise.
        if value.key_agreement and value.encipher_only:
            bits.append("encipherOnly")
        if value.key_agreement and value.decipher_only:
            bits.append("decipherOnly")
        return bits
    if isinstance(value, x509.ExtendedKeyUsage):
        return [_readable(usage) for usage in value]
    return None


def _check_no_ca_rights(request: x509.CertificateSigningRequest) -> None:
    # Checked apart from the policy's grants, so that no edit of GRANTED_EXTENSIONS can ever grant CA rights.
    for extension in _requested_extensions(request):
        if extension.oid == ExtensionOID.BASIC_CONSTRAINTS and extension.value.ca:
            raise CSRError(
                "The CSR asks for CA rights (basicConstraints CA:TRUE); client certificates cannot have them."
            )
        if extension.oid == ExtensionOID.KEY_USAGE and (extension.value.key_cert_sign or extension.value.crl_sign):
            raise CSRError("The CSR asks for certificate or CRL signing key usage; client certificates cannot have it.")
