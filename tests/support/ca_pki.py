"""CA certificates and keys for the portal-CA tests, made with cryptography (never committed as files)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def signed(
    subject: str,
    *,
    key,
    issuer: x509.Certificate | None = None,
    issuer_key=None,
    ca: bool = True,
    days: tuple[int, int] = (-1, 365),
) -> x509.Certificate:
    """A certificate for `key`, self-signed unless an issuer is given; valid from `days[0]` to `days[1]` from now."""
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + datetime.timedelta(days=days[0]))
        .not_valid_after(now + datetime.timedelta(days=days[1]))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(issuer_key or key, hashes.SHA256())
    )


def pem(*certificates: x509.Certificate) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certificates)


def key_pem(key, password: bytes | None = None) -> str:
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption).decode()


def key_lines(key) -> list[str]:
    """The base64 lines of the key's PEM: what would show if any part of the key leaked into a page or output."""
    return [line for line in key_pem(key).splitlines() if not line.startswith("-----")]


@dataclass(frozen=True)
class CompanyPKI:
    """A company's root and the intermediate it dedicates to the portal."""

    root: x509.Certificate
    root_key: ec.EllipticCurvePrivateKey
    intermediate: x509.Certificate
    intermediate_key: ec.EllipticCurvePrivateKey

    @property
    def chain_pem(self) -> str:
        return pem(self.intermediate, self.root)


def company_pki() -> CompanyPKI:
    root_key, intermediate_key = ec.generate_private_key(ec.SECP384R1()), ec.generate_private_key(ec.SECP256R1())
    root = signed("Example Root", key=root_key)
    intermediate = signed("Example API clients", key=intermediate_key, issuer=root, issuer_key=root_key)
    return CompanyPKI(root, root_key, intermediate, intermediate_key)
