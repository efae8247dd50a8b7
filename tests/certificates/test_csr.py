"""Server-side CSR checks: each bad CSR is refused with a message naming the problem."""

from __future__ import annotations

import dataclasses
import shlex
import shutil
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier
from django.contrib.auth import get_user_model

from certificates.csr import CSRError, validate_csr
from certificates.policy import CertificatePolicy, GrantedExtension, Subject, get_policy
from tests.support.pki import (
    SECRET_PASSWORD,
    UNGRANTED_REQUESTS,
    build_csr,
    key_usage,
    make_key,
    with_duplicated_extension,
)

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
    "private OID in subject": (
        build_csr([*GOOD_NAME, (ObjectIdentifier("1.3.6.1.4.1.55555.2"), "x")]),
        "remove 1.3.6.1.4.1.55555.2",
    ),
    "CN twice": (build_csr([*GOOD_NAME, (NameOID.COMMON_NAME, "portal-user-7")]), "CN twice"),
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


@pytest.mark.parametrize(("extensions", "attributes", "message"), UNGRANTED_REQUESTS.values(), ids=UNGRANTED_REQUESTS)
def test_it_refuses_what_the_policy_does_not_grant_naming_it(extensions, attributes, message):
    pem = build_csr(GOOD_NAME, extensions=extensions, csr_attributes=attributes)

    with pytest.raises(CSRError, match=message):
        validate_csr(pem, policy=POLICY, subject=SUBJECT)


def test_it_names_a_challenge_password_without_echoing_it():
    extensions, attributes, _ = UNGRANTED_REQUESTS["challengePassword attribute"]
    pem = build_csr(GOOD_NAME, extensions=extensions, csr_attributes=attributes)

    with pytest.raises(CSRError) as caught:
        validate_csr(pem, policy=POLICY, subject=SUBJECT)

    assert "challengePassword" in str(caught.value)
    assert SECRET_PASSWORD.decode() not in str(caught.value)


GRANTED_REQUESTS = {
    "none": ([], "ec"),
    "extendedKeyUsage clientAuth": ([(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)], "ec"),
    "basicConstraints CA:FALSE critical": ([(x509.BasicConstraints(ca=False, path_length=None), True)], "ec"),
    "keyUsage digitalSignature": ([(key_usage("digital_signature"), True)], "ec"),
    "all of them, RSA": (
        [
            (x509.BasicConstraints(ca=False, path_length=None), True),
            (key_usage("digital_signature", "key_encipherment"), True),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False),
        ],
        "rsa",
    ),
}


@pytest.mark.parametrize(("extensions", "key_kind"), GRANTED_REQUESTS.values(), ids=GRANTED_REQUESTS)
def test_it_accepts_extensions_asking_only_for_what_a_client_certificate_is(extensions, key_kind):
    pem = build_csr(GOOD_NAME, key=make_key(key_kind), extensions=extensions, hash_algorithm=hashes.SHA384())

    assert validate_csr(pem, policy=POLICY, subject=SUBJECT).key_type.algorithm == key_kind


def test_the_granted_extensions_are_the_policys_data():
    pem = build_csr(GOOD_NAME, extensions=[(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)])
    grants_nothing = dataclasses.replace(POLICY, granted_extensions=())

    with pytest.raises(CSRError, match=r"does not grant: extendedKeyUsage\. .* it may request none"):
        validate_csr(pem, policy=grants_nothing, subject=SUBJECT)


def test_no_policy_data_can_grant_ca_rights():
    pem = build_csr(GOOD_NAME, extensions=[(x509.BasicConstraints(ca=True, path_length=None), True)])
    grants_ca = dataclasses.replace(POLICY, granted_extensions=(GrantedExtension("basicConstraints", ("CA:TRUE",)),))

    with pytest.raises(CSRError, match="CA rights"):
        validate_csr(pem, policy=grants_ca, subject=SUBJECT)


def test_a_malformed_extension_is_a_csr_error():
    garbage_key_usage = x509.UnrecognizedExtension(x509.oid.ExtensionOID.KEY_USAGE, b"\x04\x02zz")
    pem = build_csr(GOOD_NAME, extensions=[(garbage_key_usage, True)])

    with pytest.raises(CSRError, match="extensions could not be read"):
        validate_csr(pem, policy=POLICY, subject=SUBJECT)


def test_a_duplicated_extension_is_a_csr_error():
    key = make_key()
    extensions = [
        (x509.UnrecognizedExtension(ObjectIdentifier(oid), b"\x05\x00"), False) for oid in ("1.2.3.4", "1.2.3.5")
    ]
    pem = with_duplicated_extension(build_csr(GOOD_NAME, key=key, extensions=extensions), key)

    with pytest.raises(CSRError, match="extensions could not be read"):
        validate_csr(pem, policy=POLICY, subject=SUBJECT)


OPENSSL = shutil.which("openssl")
RSA_INSTEAD_OF_EC = ("-newkey ec -pkeyopt ec_paramgen_curve:P-256", "-newkey rsa:2048")


def run_openssl(command: str, directory) -> str:
    """Run the command as a shell would split it, in `directory`, and return the CSR it wrote."""
    subprocess.run(shlex.split(command), cwd=directory, check=True, capture_output=True, timeout=60)
    return (directory / "client.csr").read_text()


@pytest.mark.skipif(OPENSSL is None, reason="no openssl binary on PATH to run the page's command with")
@pytest.mark.parametrize(
    ("edit", "refusal"),
    [
        (None, None),
        (RSA_INSTEAD_OF_EC, None),
        (("-nodes", "-nodes -addext extendedKeyUsage=clientAuth -addext basicConstraints=critical,CA:FALSE"), None),
        (("-nodes", "-addext subjectAltName=DNS:api.example.com -nodes"), "does not grant: subjectAltName."),
        (("-nodes", "-addext extendedKeyUsage=serverAuth,clientAuth -nodes"), "grant: extendedKeyUsage serverAuth."),
    ],
    ids=["as-shown", "rsa", "client-extensions", "subject-alt-name", "server-auth"],
)
def test_the_pages_openssl_command_makes_a_csr_that_passes(tmp_path, settings, edit, refusal):
    settings.CERTIFICATE_SUBJECT_ORGANIZATION = "R&D / Ops 'north'"  # quotes and the -subj separator
    policy = get_policy()
    user = get_user_model()(pk=7)
    command = policy.openssl_command(user)
    if edit is not None:
        assert edit[0] in command
        command = command.replace(*edit)

    pem = run_openssl(command, tmp_path)

    if refusal is None:
        assert validate_csr(pem, policy=policy, subject=policy.subject_for(user)).common_name.endswith("7")
    else:
        with pytest.raises(CSRError, match=refusal):
            validate_csr(pem, policy=policy, subject=policy.subject_for(user))
