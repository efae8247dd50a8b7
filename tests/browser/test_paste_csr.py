"""The paste tab: a CSR made elsewhere (here with cryptography, as openssl would) gets a certificate."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from playwright.sync_api import Page, expect

from certificates.cloudflare_client import get_cloudflare_client, get_zone_id
from certificates.models import Certificate
from tests.browser.support import ISSUE_PATH, download, load_certificate, spki

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def certificates_at_cloudflare() -> list:
    return list(get_cloudflare_client().iter_client_certificates(get_zone_id()))


def make_csr(subject: dict[str, str], *, key=None, extensions=()) -> tuple[object, str]:
    key = key or ec.generate_private_key(ec.SECP256R1())
    attributes = [
        (NameOID.ORGANIZATION_NAME, subject.get("organization")),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, subject.get("organizational_unit")),
        (NameOID.COMMON_NAME, subject["common_name"]),
    ]
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(oid, value) for oid, value in attributes if value])
    )
    for extension in extensions:
        builder = builder.add_extension(extension, critical=True)
    return key, builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture
def paste_tab(page: Page, alice, sign_in) -> Page:
    sign_in(alice)
    page.goto("/certificates/new/")
    expect(page.get_by_test_id("paste-submit")).to_be_enabled()  # the policy has loaded
    page.get_by_test_id("tab-paste").click()
    expect(page.get_by_test_id("panel-paste")).to_be_visible()
    expect(page.get_by_test_id("panel-generate")).to_be_hidden()
    return page


def csr_policy(page: Page) -> dict:
    response = page.request.get("/api/v1/csr-policy")  # with the browser's session
    assert response.ok, response.text()
    return response.json()


@pytest.mark.parametrize("how", ["pasted", "loaded from a file"])
def test_it_issues_a_certificate_for_a_pasted_csr(paste_tab, alice, traffic, how):
    page = paste_tab
    policy = csr_policy(page)
    subject = policy["subject"]
    assert subject["common_name"] == f"portal-user-{alice.pk}"
    expect(page.get_by_test_id("openssl-command")).to_contain_text(f"CN={subject['common_name']}")
    key, csr_pem = make_csr(subject, key=rsa.generate_private_key(public_exponent=65537, key_size=2048))

    if how == "pasted":
        page.get_by_test_id("csr-pem").fill(csr_pem)
    else:
        page.get_by_test_id("csr-file").set_input_files(
            {"name": "client.csr", "mimeType": "application/pkcs10", "buffer": csr_pem.encode()}
        )
        expect(page.get_by_test_id("csr-pem")).to_have_value(csr_pem)
    page.get_by_test_id("paste-validity").select_option("90")
    page.get_by_test_id("paste-name").fill("from-openssl")
    page.get_by_test_id("paste-submit").click()

    expect(page.get_by_test_id("paste-result")).to_be_visible()
    expect(page.get_by_test_id("error")).to_be_hidden()
    certificate = Certificate.objects.get(owner=alice)
    assert (certificate.status, certificate.name, certificate.validity_days) == ("active", "from-openssl", 90)
    assert certificate.key_type == "rsa-2048"
    expect(page.get_by_test_id("paste-fingerprint")).to_have_text(certificate.fingerprint_sha256)
    expect(page.get_by_test_id("paste-detail-link")).to_have_attribute("href", f"/certificates/{certificate.pk}/")

    filename, pem = download(page, "paste-download-certificate")
    assert filename == "from-openssl.crt"
    issued = load_certificate(pem)
    assert spki(issued) == spki(key)
    assert issued.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == subject["common_name"]
    lifetime = issued.not_valid_after_utc - issued.not_valid_before_utc
    assert abs(lifetime - dt.timedelta(days=90)) <= dt.timedelta(days=1)
    assert [c.id for c in certificates_at_cloudflare()] == [certificate.cloudflare_id]
    (sent,) = traffic.to("POST", ISSUE_PATH)
    assert sent.json() == {"csr": csr_pem, "validity_days": 90, "name": "from-openssl"}


WRONG_INPUTS = {
    "someone else's common name": (
        lambda s: make_csr({**s, "common_name": "portal-user-999999"})[1],
        'CN is "portal-user-999999" but must be "portal-user-',
    ),
    "a missing organizational unit": (
        lambda s: make_csr({**s, "organizational_unit": ""})[1],
        "OU is missing",
    ),
    "a private key instead of a CSR": (
        lambda s: (
            ec.generate_private_key(ec.SECP256R1())
            .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
            .decode()
        ),
        "This is a private key",
    ),
}


@pytest.mark.parametrize("case", list(WRONG_INPUTS))
def test_it_refuses_a_pasted_csr_with_the_wrong_subject_before_sending_it(paste_tab, traffic, case):
    page = paste_tab
    build, message = WRONG_INPUTS[case]
    page.get_by_test_id("csr-pem").fill(build(csr_policy(page)["subject"]))
    page.get_by_test_id("paste-submit").click()

    expect(page.get_by_test_id("error")).to_be_visible()
    expect(page.get_by_test_id("error")).to_contain_text(message)
    if case != "a private key instead of a CSR":
        expect(page.get_by_test_id("error")).to_contain_text("subject does not match the policy")
    expect(page.get_by_test_id("csr-pem")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_test_id("paste-result")).to_be_hidden()
    expect(page.get_by_test_id("paste-submit")).to_be_enabled()  # fix it and try again
    assert traffic.to("POST", ISSUE_PATH) == []
    assert not Certificate.objects.exists()
    assert certificates_at_cloudflare() == []


def test_it_shows_the_portals_refusal_of_a_csr_asking_for_ca_rights(paste_tab, traffic, emulator):
    page = paste_tab
    _, csr_pem = make_csr(
        csr_policy(page)["subject"], extensions=[x509.BasicConstraints(ca=True, path_length=None)]
    )  # the subject is right, so only the server can tell
    page.get_by_test_id("csr-pem").fill(csr_pem)
    with page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith(ISSUE_PATH)) as answer:
        page.get_by_test_id("paste-submit").click()

    assert answer.value.status == 400
    expect(page.get_by_test_id("error")).to_have_text(
        "The certificate was not issued: The CSR asks for CA rights (basicConstraints CA:TRUE); "
        "client certificates cannot have them."
    )
    expect(page.get_by_test_id("paste-result")).to_be_hidden()
    expect(page.get_by_test_id("paste-submit")).to_be_enabled()
    assert not Certificate.objects.exists()
    assert certificates_at_cloudflare() == []
