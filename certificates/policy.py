"""The certificate policy, in one place: the subject a CSR must carry, allowed keys and extensions, validity, quotas.

Values come from settings (CERTIFICATE_* in portal/settings.py); `get_policy()` builds it and
`GET /api/v1/csr-policy` serves it to the browser and to API clients.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser

from cloudflare.client import MAX_CSR_BYTES


@dataclass(frozen=True)
class KeyType:
    id: str
    label: str
    algorithm: str  # "ec" or "rsa"
    size: int  # curve size in bits for EC, modulus size for RSA


KEY_TYPES: tuple[KeyType, ...] = (
    KeyType("ec-p256", "ECDSA P-256 (recommended)", "ec", 256),
    KeyType("ec-p384", "ECDSA P-384", "ec", 384),
    KeyType("rsa-2048", "RSA 2048", "rsa", 2048),
    KeyType("rsa-3072", "RSA 3072", "rsa", 3072),
    KeyType("rsa-4096", "RSA 4096", "rsa", 4096),
)
MIN_RSA_BITS = 2048
MAX_RSA_BITS = 4096


@dataclass(frozen=True)
class GrantedExtension:
    """An extension a CSR may request, and the values of it the portal grants (in OpenSSL's names)."""

    name: str
    values: tuple[str, ...]


# A client certificate needs nothing from the CSR: Cloudflare sets the certificate's extensions itself, and
# whether it copies requested ones is undocumented. So a CSR may request only what a client certificate is
# anyway; anything else (subjectAltName, serverAuth, signing rights, unknown OIDs) is refused by name.
# keyEncipherment is granted for EC keys too: common client-certificate recipes add it whatever the key,
# and it asks for no right beyond TLS client authentication.
GRANTED_EXTENSIONS: tuple[GrantedExtension, ...] = (
    GrantedExtension("basicConstraints", ("CA:FALSE",)),
    GrantedExtension("keyUsage", ("digitalSignature", "keyEncipherment")),
    GrantedExtension("extendedKeyUsage", ("clientAuth",)),
)


@dataclass(frozen=True)
class Subject:
    common_name: str
    organization: str
    organizational_unit: str

    def openssl_subj(self) -> str:
        parts = [("O", self.organization), ("OU", self.organizational_unit), ("CN", self.common_name)]
        return "".join(f"/{key}={_escape_subj(value)}" for key, value in parts if value)


def _escape_subj(value: str) -> str:
    # openssl -subj separates attributes with "/"; a literal slash is written "\/".
    return value.replace("/", "\\/")


@dataclass(frozen=True)
class CertificatePolicy:
    organization: str
    organizational_unit: str
    common_name_prefix: str
    validity_choices: tuple[int, ...]
    default_validity_days: int
    max_validity_days: int
    max_active_per_user: int
    zone_capacity: int
    max_csr_bytes: int = MAX_CSR_BYTES
    granted_extensions: tuple[GrantedExtension, ...] = GRANTED_EXTENSIONS

    def subject_for(self, user: AbstractBaseUser) -> Subject:
        # The primary key, not the email: it identifies the account and never changes.
        return Subject(
            common_name=f"{self.common_name_prefix}{user.pk}",
            organization=self.organization,
            organizational_unit=self.organizational_unit,
        )

    def key_type(self, algorithm: str, size: int) -> KeyType | None:
        return next((k for k in KEY_TYPES if k.algorithm == algorithm and k.size == size), None)

    def granted_values(self, extension_name: str) -> tuple[str, ...] | None:
        """The values of the extension a CSR may request; None when it may not request the extension at all."""
        return next((e.values for e in self.granted_extensions if e.name == extension_name), None)

    def is_allowed_validity(self, days: int) -> bool:
        return days in self.validity_choices

    def openssl_command(self, user: AbstractBaseUser) -> str:
        subject = shlex.quote(self.subject_for(user).openssl_subj())
        return (
            "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
            f"-keyout client.key -out client.csr -subj {subject}"
        )


def get_policy() -> CertificatePolicy:
    choices = tuple(sorted(set(settings.CERTIFICATE_VALIDITY_CHOICES)))
    return CertificatePolicy(
        organization=settings.CERTIFICATE_SUBJECT_ORGANIZATION,
        organizational_unit=settings.CERTIFICATE_SUBJECT_ORGANIZATIONAL_UNIT,
        common_name_prefix=settings.CERTIFICATE_COMMON_NAME_PREFIX,
        validity_choices=choices,
        default_validity_days=settings.CERTIFICATE_DEFAULT_VALIDITY_DAYS,
        max_validity_days=max(choices),
        max_active_per_user=settings.CERTIFICATE_MAX_ACTIVE_PER_USER,
        zone_capacity=settings.CLOUDFLARE_ZONE_CAPACITY,
    )
