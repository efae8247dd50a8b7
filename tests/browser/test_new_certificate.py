"""The new-certificate page: key and CSR made in the browser, files built in the browser, checked with cryptography."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from django.conf import settings
from playwright.sync_api import expect

from certificates.models import AuditEvent, Certificate
from tests.browser.support import (
    ISSUE_PATH,
    P12_PASSWORD,
    create_certificate,
    download,
    load_certificate,
    pem_der,
    read_zip,
    spki,
    type_p12_password,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Encryption algorithm OIDs, DER-encoded, as they appear in a PKCS#12 file.
OID_PBES2 = bytes.fromhex("06092a864886f70d01050d")  # 1.2.840.113549.1.5.13 (modern: PBES2 with AES)
OID_PBE_SHA1_3DES = bytes.fromhex("060a2a864886f70d010c0103")  # 1.2.840.113549.1.12.1.3 (legacy)

KEY_TYPES = {
    "ec-p256": lambda key: isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1",
    "rsa-2048": lambda key: isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048,
}


@pytest.fixture
def alice_signed_in(alice, sign_in):
    sign_in(alice)
    return alice


@pytest.mark.parametrize("key_type", list(KEY_TYPES))
def test_it_makes_a_certificate_in_the_browser_and_the_downloads_belong_together(page, alice_signed_in, key_type):
    issued = create_certificate(page, key_type=key_type, name="build-server")
    certificate_der = load_certificate(issued.certificate_pem).public_bytes(serialization.Encoding.DER)
    expect(page.get_by_test_id("fingerprint")).to_have_text(issued.fingerprint_sha256)
    assert issued.fingerprint_sha256.replace(":", "").lower() == hashlib.sha256(certificate_der).hexdigest()
    expect(page.get_by_test_id("detail-link")).to_have_attribute("href", f"/certificates/{issued.id}/")

    type_p12_password(page)
    filename, data = download(page, "download-zip")

    assert filename == "build-server.zip"
    files = read_zip(data)
    assert sorted(files) == ["README.txt", "build-server.crt", "build-server.key", "build-server.p12"]
    key = serialization.load_pem_private_key(files["build-server.key"], password=None)
    assert files["build-server.key"].startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, not encrypted
    assert KEY_TYPES[key_type](key)
    certificate = load_certificate(files["build-server.crt"])
    assert certificate.public_bytes(serialization.Encoding.DER) == certificate_der  # what the portal issued
    assert spki(key) == spki(certificate)

    bundle = pkcs12.load_pkcs12(files["build-server.p12"], P12_PASSWORD.encode())
    assert spki(bundle.key) == spki(key)
    assert bundle.key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ) == key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    assert bundle.cert is not None
    assert bundle.cert.certificate == certificate
    assert bundle.cert.friendly_name == b"build-server"
    assert OID_PBES2 in files["build-server.p12"]
    with pytest.raises(ValueError, match=r"(?i)password"):
        pkcs12.load_pkcs12(files["build-server.p12"], b"not the password")

    readme = files["README.txt"].decode()
    hostname = settings.PORTAL_API_HOSTNAMES[0]
    assert f"https://{hostname}/" in readme
    assert issued.fingerprint_sha256 in readme
    expect(page.get_by_test_id("key-saved-note")).to_be_visible()

    # Compatibility mode (3DES/SHA-1 for old macOS and Windows) still opens with the same password.
    page.get_by_test_id("p12-legacy").check()
    filename, legacy = download(page, "download-pkcs12")

    assert filename == "build-server.p12"
    assert OID_PBE_SHA1_3DES in legacy
    assert OID_PBES2 not in legacy
    old = pkcs12.load_pkcs12(legacy, P12_PASSWORD.encode())
    assert spki(old.key) == spki(key)
    assert old.cert is not None
    assert old.cert.certificate == certificate

    stored = Certificate.objects.get(pk=issued.id)
    assert stored.status == Certificate.Status.ACTIVE
    assert stored.key_type == key_type
    assert list(
        stored.events.filter(action=AuditEvent.Action.DOWNLOADED)
        .order_by("created_at")
        .values_list("detail__format", flat=True)
    ) == ["zip", "pkcs12"]


def test_it_refuses_a_short_or_mismatched_pkcs12_password(page, alice_signed_in):
    create_certificate(page)

    page.get_by_test_id("p12-password").fill("short")
    page.get_by_test_id("p12-password-confirm").fill("short")
    page.get_by_test_id("download-pkcs12").click()
    expect(page.get_by_test_id("p12-message")).to_have_attribute("data-kind", "error")
    expect(page.get_by_test_id("p12-password")).to_have_attribute("aria-invalid", "true")

    page.get_by_test_id("p12-password").fill(P12_PASSWORD)
    page.get_by_test_id("p12-password-confirm").fill(P12_PASSWORD + "!")
    page.get_by_test_id("download-zip").click()
    expect(page.get_by_test_id("p12-message")).to_have_attribute("data-kind", "error")

    # A generated password is shown, and opens the file.
    page.get_by_test_id("p12-generate").click()
    generated = page.get_by_test_id("p12-password").input_value()
    assert len(generated) >= 16
    expect(page.get_by_test_id("p12-password")).to_have_attribute("type", "text")
    _, data = download(page, "download-pkcs12")
    assert pkcs12.load_pkcs12(data, generated.encode()).key is not None


def test_it_never_sends_the_private_key(page, alice_signed_in, traffic):
    issued = create_certificate(page, key_type="ec-p256", name="laptop")
    _, key_pem = download(page, "download-key")
    _, certificate_pem = download(page, "download-certificate")
    type_p12_password(page)
    download(page, "download-pkcs12")
    _, zip_data = download(page, "download-zip")
    page.get_by_test_id("dashboard-link").click()
    expect(page.get_by_test_id("certificate-table")).to_be_visible()

    key = serialization.load_pem_private_key(key_pem, password=None)
    assert read_zip(zip_data)["laptop.key"] == key_pem
    pkcs8 = pem_der(key_pem, "PRIVATE KEY")  # the key's DER exactly as the browser exported it
    secrets = {
        "PEM marker": b"PRIVATE KEY",
        "PKCS#8 DER": pkcs8,
        "PKCS#8 base64": base64.b64encode(pkcs8),
        "PKCS#8 base64 (unpadded)": base64.b64encode(pkcs8).rstrip(b"="),
        "PKCS#8 base64url": base64.urlsafe_b64encode(pkcs8).rstrip(b"="),
        "PKCS#8 hex": pkcs8.hex().encode(),
        "private scalar (hex)": format(key.private_numbers().private_value, "064x").encode(),
        **{f"PEM line {i}": line for i, line in enumerate(key_pem.splitlines()[1:-1]) if len(line) >= 32},
    }
    assert len(traffic.requests) > 5
    for sent in traffic.requests:
        seen = [sent.url.encode(), sent.body, *(value.encode() for value in sent.headers.values())]
        for label, secret in secrets.items():
            assert not any(secret in part for part in seen), f"{label} sent in {sent.method} {sent.url}"

    # The one issuance request carried a CSR for the downloaded key, and nothing else.
    (issue,) = traffic.to("POST", ISSUE_PATH)
    body = issue.json()
    assert sorted(body) == ["csr", "name", "validity_days"]
    csr = x509.load_pem_x509_csr(body["csr"].encode())
    assert csr.is_signature_valid
    assert spki(csr) == spki(key)
    assert spki(csr) == spki(x509.load_pem_x509_certificate(certificate_pem))
    # Every other POST is a download audit event, which carries only the file format.
    others = [r for r in traffic.requests if r.method == "POST" and r is not issue]
    assert sorted(json.loads(r.body)["format"] for r in others) == ["certificate", "key", "pkcs12", "zip"]
    assert all(r.url.endswith(f"/api/v1/certificates/{issued.id}/download-events") for r in others)
    assert all(len(json.loads(r.body)) == 1 for r in others)


def test_it_uses_an_unusual_name_as_text_and_makes_safe_file_names(page, alice_signed_in):
    name = 'Zoë\'s "laptop" <img src=x onerror=alert(1)>'
    issued = create_certificate(page, name=name)

    assert issued.name == name
    expect(page.get_by_test_id("result-name")).to_have_text(name)
    filename, _ = download(page, "download-key")
    assert filename == "Zoe-s-laptop-img-src-x-onerror-alert-1.key"
    page.get_by_test_id("dashboard-link").click()
    expect(page.get_by_test_id("certificate-table").get_by_role("link", name=name)).to_be_visible()
    expect(page.locator("img[src=x]")).to_have_count(0)


def test_at_the_quota_it_says_how_to_make_room_and_makes_no_key(page, alice_signed_in, emulator, traffic):
    from certificates import services
    from tests.support.pki import policy_csr

    for number in range(5):
        services.certificate_issue(
            user=alice_signed_in,
            csr=policy_csr(alice_signed_in),
            validity_days=365,
            name=f"box-{number}",
            origin=services.Origin(actor=alice_signed_in),
        )
    page.goto("/certificates/new/")
    expect(page.get_by_test_id("policy-active")).to_have_text("5 of 5")
    expect(page.get_by_test_id("user-full")).to_be_visible()
    expect(page.get_by_test_id("user-full")).to_contain_text("revoke one you no longer use")

    # The policy has loaded, and the buttons stay disabled: no key is made only to be refused.
    expect(page.get_by_test_id("policy-summary")).to_be_visible()
    expect(page.get_by_test_id("create-button")).to_be_disabled()
    page.get_by_test_id("tab-paste").click()
    expect(page.get_by_test_id("paste-submit")).to_be_disabled()
    assert traffic.to("POST", ISSUE_PATH) == []

    # The notice's link leads to a revoke action that exists.
    page.get_by_test_id("user-full").get_by_role("link").click()
    page.get_by_test_id("row-revoke").first.click()
    expect(page.get_by_test_id("confirm-revoke")).to_be_visible()
    assert Certificate.objects.filter(owner=alice_signed_in).count() == 5


def test_it_warns_before_leaving_with_an_unsaved_key(page, alice_signed_in, live_server):
    create_certificate(page)
    dialogs = []

    def stay(dialog) -> None:
        dialogs.append(dialog.type)
        dialog.dismiss()

    page.once("dialog", stay)
    with page.expect_event("dialog"):
        page.get_by_test_id("dashboard-link").click()
    expect(page.get_by_test_id("result")).to_be_visible()
    assert dialogs == ["beforeunload"]
    assert page.url == f"{live_server.url}/certificates/new/"

    download(page, "download-key")
    page.get_by_test_id("dashboard-link").click()  # saved: no question asked
    expect(page).to_have_url(f"{live_server.url}/certificates/")
