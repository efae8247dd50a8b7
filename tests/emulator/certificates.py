"""CAs and client certificates made with cryptography, as a company with its own CA would make them."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DAY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class Issued:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()

    @property
    def key_pem(self) -> str:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()

    @property
    def ski(self) -> str:
        """Uppercase hex, as cf.tls_client_auth.cert_issuer_ski shows the issuer's."""
        extension = self.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        return extension.value.digest.hex().upper()

    def write(self, directory: Path, name: str) -> tuple[Path, Path]:
        """The certificate and key as files (for a TLS client); their paths."""
        certificate, key = directory / f"{name}.pem", directory / f"{name}.key"
        certificate.write_text(self.pem)
        key.write_text(self.key_pem)
        return str(certificate), str(key)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_ca(
    common_name: str,
    *,
    now: datetime.datetime,
    days: int = 365,
    issuer: Issued | None = None,
    starts: datetime.datetime | None = None,
) -> Issued:
    """A CA (self-signed, or an intermediate when `issuer` is given) valid from `starts` (a day before `now`)."""
    key = ec.generate_private_key(ec.SECP256R1())
    not_before = starts or now - DAY
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(issuer.certificate.subject if issuer else _name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    return Issued(builder.sign(issuer.key if issuer else key, hashes.SHA256()), key)


def make_leaf(
    issuer: Issued,
    common_name: str = "device-1",
    *,
    now: datetime.datetime,
    days: int = 30,
    serial: int | None = None,
    starts: datetime.datetime | None = None,
) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    not_before = starts or now - DAY
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(issuer.certificate.subject)
        .public_key(key.public_key())
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(issuer.key, hashes.SHA256())
    )
    return Issued(certificate, key)


def key_and_csr(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, str]:
    """A key the client keeps, and the CSR (PEM) it sends for the managed CA to sign."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(_name(common_name)).sign(key, hashes.SHA256())
    return key, csr.public_bytes(serialization.Encoding.PEM).decode()
