"""Keys and CSRs for tests, made with cryptography (never committed as files)."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID


def make_key(kind: str = "ec"):
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(kind)


def make_csr(common_name: str, *, key=None, organization: str = "Example Inc.", unit: str = "API Developers") -> str:
    key = key or make_key()
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit),
        ]
    )
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def build_csr(
    attributes: list[tuple[object, str]],
    *,
    key=None,
    extensions: list[tuple[object, bool]] | None = None,
    hash_algorithm=None,
) -> str:
    """A CSR with exactly the given subject attributes and extensions (for the table of bad CSRs)."""
    key = key or make_key()
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(oid, value) for oid, value in attributes])
    )
    for extension, critical in extensions or ():
        builder = builder.add_extension(extension, critical=critical)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else (hash_algorithm or hashes.SHA256())
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM).decode()


def policy_csr(user, *, key=None, **kwargs) -> str:
    """A CSR with the subject the portal's policy demands of `user`."""
    from certificates.policy import get_policy

    subject = get_policy().subject_for(user)
    return make_csr(
        subject.common_name, key=key, organization=subject.organization, unit=subject.organizational_unit, **kwargs
    )
