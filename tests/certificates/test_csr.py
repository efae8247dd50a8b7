"""Server-side CSR checks: each bad CSR is refused with a message naming the problem."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from certificates.csr import CSRError, validate_csr
from certificates.policy import CertificatePolicy, Subject
from tests.support.pki import build_csr

POLICY = CertificatePolicy(
    organization="Example Inc.",
    organizational_unit="API Developers",
    common_name_prefix="portal-user-",
    validity_choices=(30, 365),
    default_validity_days=365,
    max_validity_days=365,
    max_active_per_user=5,
    zone_capacity=100,
)
SUBJECT = Subject(common_name="portal-user-7", organization="Example Inc.", organizational_unit="API Developers")
GOOD_NAME = [
    (NameOID.COMMON_NAME, "portal-user-7"),
    (NameOID.ORGANIZATION_NAME, "Example Inc."),
    (NameOID.ORGANIZATIONAL_UNIT_NAME, "API Developers"),
]


def tampered_signature() -> str:
    pem = build_csr(GOOD_NAME)
    der = bytearray(x509.load_pem_x509_csr(pem.encode()).public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x01  # a bit of the signature
    return x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM).decode()


BAD_CSRS = {
    "empty": ("", "empty"),
    "not PEM": ("hello", "PEM"),
    "a private key": (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode(),
        "private key",
    ),
    "damaged base64": (
        "-----BEGIN CERTIFICATE REQUEST-----\nMIIBfakefake\n-----END CERTIFICATE REQUEST-----\n",
        "could not be parsed",
    ),
    "two requests": (build_csr(GOOD_NAME) + build_csr(GOOD_NAME), "exactly one"),
    "too large": (build_csr(GOOD_NAME) + "\n" * 9000, "larger than"),
    "bad signature": (tampered_signature(), "signature"),
    "P-521 curve": (build_csr(GOOD_NAME, key=ec.generate_private_key(ec.SECP521R1())), "secp521r1"),
    "RSA 1024": (build_csr(GOOD_NAME, key=rsa.generate_private_key(public_exponent=65537, key_size=1024)), "1024 bits"),  # noqa: S505 - refused on purpose
    "Ed25519": (build_csr(GOOD_NAME, key=ed25519.Ed25519PrivateKey.generate()), "Ed25519 keys are not allowed"),
    "wrong CN": (build_csr([(NameOID.COMMON_NAME, "portal-user-8"), *GOOD_NAME[1:]]), "CN=portal-user-7"),
    "missing OU": (build_csr(GOOD_NAME[:2]), "OU=API Developers"),
    "extra country": (build_csr([*GOOD_NAME, (NameOID.COUNTRY_NAME, "US")]), "remove countryName"),
    "CN twice": (build_csr([*GOOD_NAME, (NameOID.COMMON_NAME, "portal-user-7")]), "CN twice"),
    "asks for CA rights": (
        build_csr(GOOD_NAME, extensions=[(x509.BasicConstraints(ca=True, path_length=None), True)]),
        "CA rights",
    ),
    "asks for cert signing": (
        build_csr(
            GOOD_NAME,
            extensions=[
                (
                    x509.KeyUsage(
                        digital_signature=True,
                        content_commitment=False,
                        key_encipherment=False,
                        data_encipherment=False,
                        key_agreement=False,
                        key_cert_sign=True,
                        crl_sign=False,
                        encipher_only=False,
                        decipher_only=False,
                    ),
                    True,
                )
            ],
        ),
        "signing key usage",
    ),
}


@pytest.mark.parametrize(("pem", "message"), BAD_CSRS.values(), ids=BAD_CSRS.keys())
def test_it_refuses_a_bad_csr_with_a_message_naming_the_problem(pem, message):
    with pytest.raises(CSRError, match=message):
        validate_csr(pem, policy=POLICY, subject=SUBJECT)


def test_it_never_echoes_a_pasted_private_key():
    key_pem = BAD_CSRS["a private key"][0]
    with pytest.raises(CSRError) as caught:
        validate_csr(key_pem, policy=POLICY, subject=SUBJECT)
    assert key_pem.splitlines()[1] not in str(caught.value)


@pytest.mark.parametrize(
    ("key", "key_type"),
    [
        (ec.generate_private_key(ec.SECP256R1()), "ec-p256"),
        (ec.generate_private_key(ec.SECP384R1()), "ec-p384"),
        (rsa.generate_private_key(public_exponent=65537, key_size=2048), "rsa-2048"),
        (rsa.generate_private_key(public_exponent=65537, key_size=4096), "rsa-4096"),
    ],
    ids=["p256", "p384", "rsa2048", "rsa4096"],
)
def test_it_accepts_the_allowed_keys(key, key_type):
    validated = validate_csr(build_csr(GOOD_NAME, key=key), policy=POLICY, subject=SUBJECT)
    assert validated.key_type.id == key_type
    assert validated.common_name == "portal-user-7"
    assert len(validated.public_key_sha256) == 64


def test_it_accepts_any_attribute_order_and_windows_line_endings():
    pem = build_csr(list(reversed(GOOD_NAME))).replace("\n", "\r\n")
    validated = validate_csr("  " + pem + "\r\n", policy=POLICY, subject=SUBJECT)
    assert "\r" not in validated.pem
    assert validated.pem.endswith("-----END CERTIFICATE REQUEST-----\n")


def test_it_accepts_harmless_client_extensions():
    pem = build_csr(
        GOOD_NAME,
        extensions=[(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), False)],
        hash_algorithm=hashes.SHA384(),
    )
    assert validate_csr(pem, policy=POLICY, subject=SUBJECT).key_type.id == "ec-p256"
