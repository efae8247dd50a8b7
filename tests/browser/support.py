"""Steps the browser tests share: make a certificate on the new-certificate page, download its files."""

from __future__ import annotations

import base64
import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from playwright.sync_api import Page, expect

ISSUE_PATH = "/api/v1/certificates"
P12_PASSWORD = "Tr0ub4dor & 3 horses"  # typed into the page, then used to open the .p12


@dataclass(frozen=True)
class Issued:
    """What the page got back from POST /api/v1/certificates."""

    id: int
    name: str
    fingerprint_sha256: str
    detail_url: str
    certificate_pem: str


def create_certificate(page: Page, *, key_type: str = "ec-p256", name: str = "build-server") -> Issued:
    """Fill the generate tab and create; returns once the page shows the result."""
    page.goto("/certificates/new/")
    expect(page.get_by_test_id("create-button")).to_be_enabled()  # the policy has loaded
    page.get_by_test_id("key-type").select_option(key_type)
    page.get_by_test_id("name").fill(name)
    with page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith(ISSUE_PATH)) as answer:
        page.get_by_test_id("create-button").click()
    response = answer.value
    assert response.status == 201, response.text()
    expect(page.get_by_test_id("result")).to_be_visible()
    for step in ("key", "csr", "issue"):
        expect(page.get_by_test_id(f"progress-{step}")).to_have_attribute("data-state", "done")
    expect(page.get_by_test_id("error")).to_be_hidden()
    data = response.json()
    return Issued(
        id=data["id"],
        name=data["name"],
        fingerprint_sha256=data["fingerprint_sha256"],
        detail_url=data["detail_url"],
        certificate_pem=data["certificate"],
    )


def download(page: Page, test_id: str) -> tuple[str, bytes]:
    """Click a download button; returns the suggested file name and the bytes the browser saved.

    Also waits for the page to record the download (a fire-and-forget POST to .../download-events).
    """
    with (
        page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/download-events")) as event,
        page.expect_download() as info,
    ):
        page.get_by_test_id(test_id).click()
    assert event.value.status == 204, event.value.text()
    saved = info.value
    assert saved.failure() is None, saved.failure()
    return saved.suggested_filename, Path(saved.path()).read_bytes()


def type_p12_password(page: Page, password: str = P12_PASSWORD) -> None:
    page.get_by_test_id("p12-password").fill(password)
    page.get_by_test_id("p12-password-confirm").fill(password)


def read_zip(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        return {info.filename: archive.read(info) for info in archive.infolist()}


def spki(key_or_certificate) -> bytes:
    """The SubjectPublicKeyInfo (DER) of a private key, public key, certificate or CSR."""
    public_key = key_or_certificate.public_key() if hasattr(key_or_certificate, "public_key") else key_or_certificate
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def pem_der(pem: bytes, label: str) -> bytes:
    """The DER inside one PEM block, exactly as written (not re-encoded by cryptography)."""
    match = re.search(
        rb"-----BEGIN " + label.encode() + rb"-----(.+?)-----END " + label.encode() + rb"-----", pem, re.S
    )
    assert match, f"no {label} block"
    return base64.b64decode(b"".join(match.group(1).split()))


def load_certificate(pem: bytes | str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode() if isinstance(pem, str) else pem)
