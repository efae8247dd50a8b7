"""The certificate pages at a phone's width (390 px) and a desktop's (1280 px): nothing wider than the screen, the
counts that follow an issuance, renew as replace-then-revoke, and the copy buttons."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from certificates import services
from certificates.models import AuditEvent, Certificate
from tests.browser.support import create_certificate, download, load_certificate
from tests.support.pki import policy_csr

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WIDTHS = [390, 1280]
# A name as long as the form allows, without spaces: the worst case for a narrow screen besides the hex.
LONG_NAME = "build-server-" + "x" * 87


def issue(user, name: str) -> Certificate:
    return services.certificate_issue(
        user=user, csr=policy_csr(user), validity_days=365, name=name, origin=services.Origin(actor=user)
    )


@pytest.fixture
def alice_with_certificates(emulator, alice, sign_in) -> Certificate:
    """Alice signed in, with a certificate whose history has a download and a revocation by staff."""
    sign_in(alice)
    issue(alice, LONG_NAME)
    certificate = issue(alice, "laptop")
    services.certificate_record_download(
        certificate=certificate, file_format="pkcs12", origin=services.Origin(actor=alice)
    )
    return certificate


# The innermost visible elements that reach past the right edge: what a failure names.
TOO_WIDE = """() => Array.from(document.querySelectorAll("body *"))
  .filter((el) => el.getBoundingClientRect().right > window.innerWidth + 0.5 && el.getClientRects().length)
  .filter((el) => !Array.from(el.children).some((c) => c.getBoundingClientRect().right > window.innerWidth + 0.5))
  .slice(0, 5)
  .map((el) => `${el.tagName}.${el.className}#${el.id} ${Math.round(el.getBoundingClientRect().right)}`)"""


def assert_fits(page: Page) -> None:
    widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], (
        f"the page is {widths[0]} px wide in a {widths[1]} px viewport: {page.evaluate(TOO_WIDE)}"
    )


def at_width(page: Page, width: int) -> None:
    page.set_viewport_size({"width": width, "height": 900})


@pytest.mark.parametrize("width", WIDTHS)
def test_the_dashboard_fits_the_screen(page, alice_with_certificates, width):
    at_width(page, width)
    page.goto("/certificates/")

    expect(page.get_by_test_id("certificate-table")).to_contain_text("laptop")
    assert_fits(page)


@pytest.mark.parametrize("width", WIDTHS)
def test_the_detail_page_fits_the_screen_fingerprint_serial_and_dates_included(page, alice_with_certificates, width):
    certificate = alice_with_certificates
    at_width(page, width)
    page.goto(f"/certificates/{certificate.pk}/")

    for test_id in ("fingerprint", "serial", "expires-on"):
        expect(page.get_by_test_id(test_id)).to_be_visible()
        box = page.get_by_test_id(test_id).bounding_box()
        assert box["x"] + box["width"] <= width, test_id  # not cut off at the right edge
    expect(page.get_by_test_id("history")).to_contain_text("PKCS#12 file downloaded")
    assert_fits(page)


@pytest.mark.parametrize("width", WIDTHS)
def test_the_new_certificate_page_fits_the_screen_before_and_after_issuing(page, alice, sign_in, width):
    sign_in(alice)
    at_width(page, width)
    page.goto("/certificates/new/")
    expect(page.get_by_test_id("create-button")).to_be_enabled()
    assert_fits(page)
    page.get_by_test_id("tab-paste").click()
    expect(page.get_by_test_id("openssl-command")).to_be_visible()
    assert_fits(page)

    page.get_by_test_id("tab-generate").click()
    create_certificate(page, name=LONG_NAME[:60])
    assert_fits(page)


def test_the_counts_follow_an_issuance_and_offer_another(page, alice, sign_in):
    sign_in(alice)
    page.goto("/certificates/new/")
    expect(page.get_by_test_id("policy-active")).to_have_text("0 of 5")
    expect(page.get_by_test_id("held")).to_have_text("0")

    create_certificate(page, name="first")

    expect(page.get_by_test_id("policy-active")).to_have_text("1 of 5")
    expect(page.get_by_test_id("held")).to_have_text("1")
    expect(page.get_by_test_id("create-another")).to_be_visible()
    expect(page.get_by_test_id("user-full")).to_be_hidden()
    expect(page.get_by_test_id("result-expires")).to_have_text(
        Certificate.objects.get(name="first").expires_on.strftime("%Y-%m-%d %H:%M UTC")
    )


def test_issuing_the_last_allowed_certificate_shows_the_limit_instead_of_create_another(page, alice, sign_in, settings):
    settings.CERTIFICATE_MAX_ACTIVE_PER_USER = 1
    sign_in(alice)

    create_certificate(page, name="only-one")

    expect(page.get_by_test_id("policy-active")).to_have_text("1 of 1")
    expect(page.get_by_test_id("user-full")).to_be_visible()
    expect(page.get_by_test_id("create-another")).to_be_hidden()


def test_renew_makes_the_replacement_then_revokes_the_old_one_on_confirmation(
    page, alice, sign_in, emulator, live_server
):
    sign_in(alice)
    old = issue(alice, "ci-runner")
    page.goto(f"/certificates/{old.pk}/")
    page.get_by_test_id("renew").click()
    expect(page.get_by_test_id("renewing")).to_contain_text("ci-runner")
    expect(page.get_by_test_id("name")).to_have_value("ci-runner")

    issued = create_certificate_here(page)
    download(page, "download-key")
    expect(page.get_by_test_id("replace-old")).to_be_visible()
    assert Certificate.objects.get(pk=old.pk).status == Certificate.Status.ACTIVE  # nothing revoked yet

    page.get_by_test_id("revoke-replaced").click()
    expect(page.get_by_test_id("replacement")).to_contain_text("ci-runner")
    assert Certificate.objects.get(pk=old.pk).status == Certificate.Status.ACTIVE  # asking changes nothing
    page.get_by_test_id("confirm-revoke").click()

    expect(page).to_have_url(f"{live_server.url}/certificates/{issued}/")
    assert Certificate.objects.get(pk=old.pk).status == Certificate.Status.PENDING_REVOCATION
    assert Certificate.objects.get(pk=issued).status == Certificate.Status.ACTIVE
    event = AuditEvent.objects.get(certificate=old, action=AuditEvent.Action.REVOCATION_REQUESTED)
    assert event.detail == {"reason": "replaced by “ci-runner”"}


def create_certificate_here(page: Page) -> int:
    """Create on the page as it is (the renew page, with its name filled in); returns the new certificate's id."""
    expect(page.get_by_test_id("create-button")).to_be_enabled()
    with page.expect_response(
        lambda r: r.request.method == "POST" and r.url.endswith("/api/v1/certificates")
    ) as answer:
        page.get_by_test_id("create-button").click()
    assert answer.value.status == 201, answer.value.text()
    expect(page.get_by_test_id("result")).to_be_visible()
    return int(answer.value.json()["id"])


def test_the_copy_buttons_copy_the_certificate_pem(page, context, alice, sign_in):
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    sign_in(alice)
    issued = create_certificate(page, name="copied")

    page.get_by_test_id("copy-pem").click()
    expect(page.get_by_test_id("copy-pem")).to_have_text("Copied")
    assert load_certificate(page.evaluate("navigator.clipboard.readText()")) == load_certificate(issued.certificate_pem)

    download(page, "download-key")
    page.goto(issued.detail_url)
    page.get_by_test_id("copy-pem").click()
    expect(page.get_by_test_id("copy-pem")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == Certificate.objects.get(pk=issued.id).certificate_pem
