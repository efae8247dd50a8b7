"""Keys and CSRs for tests, made with cryptography (never committed as files)."""

from __future__ import annotations

import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import AttributeOID, ExtendedKeyUsageOID, NameOID


def make_key(kind: str = "ec"):
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(kind)


def make_csr(
    common_name: str,
    *,
    key=None,
    organization: str = "Example Inc.",
    unit: str = "API Developers",
    extensions: list[tuple[object, bool]] | None = None,
    attributes: list[tuple[object, bytes]] | None = None,
) -> str:
    attribute_list = [
        (NameOID.COMMON_NAME, common_name),
        (NameOID.ORGANIZATION_NAME, organization),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, unit),
    ]
    return build_csr(attribute_list, key=key, extensions=extensions, csr_attributes=attributes)


def build_csr(
    attributes: list[tuple[object, str]],
    *,
    key=None,
    extensions: list[tuple[object, bool]] | None = None,
    hash_algorithm=None,
    csr_attributes: list[tuple[object, bytes]] | None = None,
) -> str:
    """A CSR with exactly the given subject attributes, extensions and CSR attributes (for the table of bad CSRs)."""
    key = key or make_key()
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(oid, value) for oid, value in attributes])
    )
    for extension, critical in extensions or ():
        builder = builder.add_extension(extension, critical=critical)
    for oid, value in csr_attributes or ():
        builder = builder.add_attribute(oid, value)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else (hash_algorithm or hashes.SHA256())
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM).decode()


def policy_csr(user, *, key=None, **kwargs) -> str:
    """A CSR with the subject the portal's policy demands of `user`."""
    from certificates.policy import get_policy

    subject = get_policy().subject_for(user)
    return make_csr(
        subject.common_name, key=key, organization=subject.organization, unit=subject.organizational_unit, **kwargs
    )


def with_duplicated_extension(pem: str, key) -> str:
    """The CSR (made with `key`, carrying extensions 1.2.3.4 and 1.2.3.5) re-signed with both OIDs 1.2.3.4.

    No builder makes such a CSR, yet one can arrive; its signature is valid, so only the duplicate is wrong.
    """
    request = x509.load_pem_x509_csr(pem.encode())
    tbs = request.tbs_certrequest_bytes
    assert tbs.count(_UNKNOWN_OID_5) == 1
    tbs = tbs.replace(_UNKNOWN_OID_5, _UNKNOWN_OID_4)
    signature = key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    # CertificationRequest ::= SEQUENCE { info, signatureAlgorithm, BIT STRING signature } (RFC 2986).
    body = tbs + _ECDSA_WITH_SHA256 + _der(0x03, b"\x00" + signature)
    return x509.load_der_x509_csr(_der(0x30, body)).public_bytes(serialization.Encoding.PEM).decode()


_UNKNOWN_OID_4 = bytes.fromhex("06032a0304")  # OBJECT IDENTIFIER 1.2.3.4
_UNKNOWN_OID_5 = bytes.fromhex("06032a0305")  # OBJECT IDENTIFIER 1.2.3.5
_ECDSA_WITH_SHA256 = bytes.fromhex("300a06082a8648ce3d040302")


def _der(tag: int, content: bytes) -> bytes:
    length = len(content)
    if length < 0x80:
        return bytes([tag, length]) + content
    encoded = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(encoded)]) + encoded + content


def key_usage(*bits: str) -> x509.KeyUsage:
    """A KeyUsage with only the named bits set (cryptography's argument names)."""
    names = (
        "digital_signature",
        "content_commitment",
        "key_encipherment",
        "data_encipherment",
        "key_agreement",
        "key_cert_sign",
        "crl_sign",
        "encipher_only",
        "decipher_only",
    )
    return x509.KeyUsage(**{name: name in bits for name in names})


PRIVATE_OID = x509.ObjectIdentifier("1.3.6.1.4.1.55555.1")
SECRET_PASSWORD = b"hunter2-challenge"

# Requests the CSR policy does not grant: (extensions, CSR attributes, the refusal the message must contain).
UNGRANTED_REQUESTS: dict[str, tuple[list[tuple[object, bool]], list[tuple[object, bytes]], str]] = {
    "subjectAltName DNS": (
        [(x509.SubjectAlternativeName([x509.DNSName("api.example.com")]), False)],
        [],
        "does not grant: subjectAltName.",
    ),
    "subjectAltName IP": (
        [(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("192.0.2.1"))]), False)],
        [],
        "does not grant: subjectAltName.",
    ),
    "subjectAltName URI": (
        [(x509.SubjectAlternativeName([x509.UniformResourceIdentifier("spiffe://example.com/ci")]), True)],
        [],
        "does not grant: subjectAltName.",
    ),
    "subjectAltName email": (
        [(x509.SubjectAlternativeName([x509.RFC822Name("alice@example.com")]), False)],
        [],
        "does not grant: subjectAltName.",
    ),
    "extendedKeyUsage serverAuth": (
        [(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]), False)],
        [],
        "does not grant: extendedKeyUsage serverAuth.",
    ),
    "extendedKeyUsage any": (
        [(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE]), True)],
        [],
        "does not grant: extendedKeyUsage anyExtendedKeyUsage.",
    ),
    "extendedKeyUsage private OID": (
        [(x509.ExtendedKeyUsage([PRIVATE_OID]), False)],
        [],
        "does not grant: extendedKeyUsage 1.3.6.1.4.1.55555.1.",
    ),
    "keyUsage extra bits": (
        [(key_usage("digital_signature", "content_commitment", "data_encipherment"), True)],
        [],
        "does not grant: keyUsage nonRepudiation, keyUsage dataEncipherment.",
    ),
    "keyUsage keyAgreement encipherOnly": (
        [(key_usage("key_agreement", "encipher_only"), False)],
        [],
        "does not grant: keyUsage keyAgreement, keyUsage encipherOnly.",
    ),
    "keyUsage certificate signing": ([(key_usage("key_cert_sign"), True)], [], "signing key usage"),
    "basicConstraints CA:TRUE critical": ([(x509.BasicConstraints(ca=True, path_length=None), True)], [], "CA rights"),
    "basicConstraints CA:TRUE": ([(x509.BasicConstraints(ca=True, path_length=0), False)], [], "CA rights"),
    "private OID critical": (
        [(x509.UnrecognizedExtension(PRIVATE_OID, b"\x05\x00"), True)],
        [],
        "does not grant: 1.3.6.1.4.1.55555.1.",
    ),
    "private OID not critical": (
        [(x509.UnrecognizedExtension(PRIVATE_OID, b"\x05\x00"), False)],
        [],
        "does not grant: 1.3.6.1.4.1.55555.1.",
    ),
    "subjectKeyIdentifier": (
        [(x509.SubjectKeyIdentifier(b"\x01" * 20), False)],
        [],
        "does not grant: subjectKeyIdentifier.",
    ),
    "several at once": (
        [
            (x509.SubjectAlternativeName([x509.DNSName("api.example.com")]), False),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
        ],
        [],
        "does not grant: subjectAltName, extendedKeyUsage serverAuth.",
    ),
    "challengePassword attribute": (
        [],
        [(AttributeOID.CHALLENGE_PASSWORD, SECRET_PASSWORD)],
        "does not accept: challengePassword.",
    ),
    "unstructuredName attribute": (
        [(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)],
        [(AttributeOID.UNSTRUCTURED_NAME, b"ci runner")],
        "does not accept: unstructuredName.",
    ),
}
