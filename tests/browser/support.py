"""Steps the browser tests share: make a certificate on the new-certificate page, download its files; check that a
page fits its viewport and has no serious accessibility violation (check_layout, check_accessibility)."""

from __future__ import annotations

import base64
import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from playwright.sync_api import Page, expect

from tests.conftest import services_required

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


# -- layout and accessibility checks, shared by every page's browser tests ---------------------------------------

# The widths the pages are checked at: a phone (iPhone 12-15, 390 CSS pixels) and a laptop.
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
VIEWPORTS = {"390px": PHONE, "1280px": DESKTOP}

# Elements that stick out of the viewport, unless a horizontally scrolling ancestor holds them (a wide table in a
# scroller is fine: the page itself does not scroll sideways). Also whether the page scrolls sideways at all.
_FIND_OVERFLOW = """() => {
  const width = document.documentElement.clientWidth;
  const scrollsSideways = (el) => ['auto', 'scroll'].includes(getComputedStyle(el).overflowX);
  const held = (el) => { for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
    if (scrollsSideways(p)) return true; } return false; };
  const name = (el) => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
    (el.getAttribute('data-testid') ? `[data-testid=${el.getAttribute('data-testid')}]` : '') +
    (typeof el.className === 'string' && el.className.trim() ? '.' + el.className.trim().split(/\\s+/).join('.') : '');
  const wide = [];
  for (const el of document.body.querySelectorAll('*')) {
    const box = el.getBoundingClientRect();
    if (box.width === 0 || box.height === 0 || getComputedStyle(el).visibility === 'hidden') continue;
    const outside = box.right > width + 1 || box.left < -1;
    if (outside && !held(el)) wide.push(`${name(el)} spans ${Math.round(box.left)}..${Math.round(box.right)}`);
  }
  return { width, scrollWidth: document.documentElement.scrollWidth, wide: wide.slice(0, 10) };
}"""

# The bounding boxes of the header's brand and of every visible item of its navigation.
_HEADER_BOXES = """() => {
  const box = (el) => { const r = el.getBoundingClientRect();
    return { name: (el.textContent || '').trim().replace(/\\s+/g, ' ').slice(0, 40), left: r.left, right: r.right,
             top: r.top, bottom: r.bottom, visible: r.width > 0 && r.height > 0 }; };
  const brand = document.querySelector('[data-testid=brand]');
  const items = Array.from(document.querySelectorAll(
    '[data-testid=site-nav] > a, [data-testid=account-menu] > summary'));
  return { brand: brand && box(brand), items: items.map(box).filter((b) => b.visible) };
}"""


def _intersect(a: dict, b: dict) -> bool:
    return a["left"] < b["right"] and b["left"] < a["right"] and a["top"] < b["bottom"] and b["top"] < a["bottom"]


def check_layout(page: Page) -> None:
    """The page fits its viewport (nothing sticks out sideways) and the header's brand and navigation items do
    not overlap one another. Call it after the page has rendered what it shows."""
    fit = page.evaluate(_FIND_OVERFLOW)
    assert fit["scrollWidth"] <= fit["width"], f"the page scrolls sideways: {fit}"
    assert fit["wide"] == [], f"wider than the {fit['width']} px viewport: {fit['wide']}"

    header = page.evaluate(_HEADER_BOXES)
    assert header["brand"], "no brand ([data-testid=brand]) in the header"
    assert header["items"], "no visible navigation item ([data-testid=site-nav])"
    boxes = [header["brand"], *header["items"]]
    overlaps = [(a["name"], b["name"]) for i, a in enumerate(boxes) for b in boxes[i + 1 :] if _intersect(a, b)]
    assert overlaps == [], f"overlapping in the header: {overlaps}"


# axe-core comes from npm (frontend/package.json's devDependencies: `npm ci` in frontend/, which `make test` runs).
AXE_SCRIPT = Path(__file__).resolve().parents[2] / "frontend" / "node_modules" / "axe-core" / "axe.min.js"
# WCAG 2.1 A and AA, and axe's best practices (landmarks, one h1, ...).
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]
BLOCKING_IMPACTS = {"serious", "critical"}


def axe_violations(page: Page) -> list[dict]:
    """axe-core's violations on the page as it is now, every impact."""
    if not AXE_SCRIPT.is_file():
        # As with Chromium (tests/browser/conftest.py): skipped on a machine without it, a failure in CI.
        problem = f"{AXE_SCRIPT} is missing: run `npm ci` in frontend/ (make test-js does)"
        if services_required():
            pytest.fail(problem)
        pytest.skip(problem)
    # Evaluated through the DevTools protocol, which the page's Content-Security-Policy does not govern; a
    # <script> tag (page.add_script_tag) would be an inline script that the policy blocks, and the `page` fixture
    # fails every test on a violation.
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(AXE_SCRIPT.read_text(encoding="utf-8"))
    result = page.evaluate(
        "async (tags) => (await axe.run(document, { runOnly: { type: 'tag', values: tags } })).violations"
        ".map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(' ')) }))",
        AXE_TAGS,
    )
    return list(result)


def check_accessibility(page: Page) -> None:
    """No serious or critical axe-core violation on the page as it is now."""
    blocking = [v for v in axe_violations(page) if v["impact"] in BLOCKING_IMPACTS]
    assert blocking == [], "axe-core: " + "; ".join(
        f"{v['id']} ({v['impact']}): {v['help']} at {v['nodes'][:5]}" for v in blocking
    )
