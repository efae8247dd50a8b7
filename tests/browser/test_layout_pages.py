"""The developer's pages at a phone's width (390 px) and a laptop's (1280 px): nothing wider than the screen, the
header's brand and navigation apart, and no serious or critical accessibility violation (axe-core).

A failing test leaves a full-page screenshot named after the page and the width (tests/browser/conftest.py)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from certificates import services
from tests.browser.support import DESKTOP, VIEWPORTS, check_accessibility, check_layout
from tests.support.pki import policy_csr

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# name -> path; "{certificate}" and "{token}" are filled in with the ids of alice's certificate and token.
DEVELOPER_PAGES = {
    "home": "/",
    "dashboard": "/certificates/",
    "detail": "/certificates/{certificate}/",
    "revoke": "/certificates/{certificate}/revoke/",
    "new-certificate": "/certificates/new/",
    "networks": "/allowlist/",
    "tokens": "/tokens/",
    "token-revoke": "/tokens/{token}/revoke/",
}


@pytest.fixture
def alice_at_work(emulator, alice, sign_in) -> dict[str, int]:
    """alice signed in, with what the pages list at their longest: a certificate (64-character fingerprint),
    a token, two networks."""
    origin = services.Origin(actor=alice)
    certificate = services.certificate_issue(
        user=alice, csr=policy_csr(alice), validity_days=365, name="build server in the basement", origin=origin
    )
    token, _ = services.api_token_create(user=alice, name="deploy script of the nightly job", origin=origin)
    # Documentation ranges, which the edge never sees: saved as a confirmed choice (certificates.allowlist).
    services.allowlist_set(
        user=alice, networks=["192.0.2.0/24", "2001:db8:1234:5678::/64"], origin=origin, confirm_unreachable=True
    )
    sign_in(alice)
    return {"certificate": certificate.pk, "token": token.pk}


def open_page(page, path: str, viewport: dict) -> None:
    page.set_viewport_size(viewport)
    page.goto(path)
    if path.startswith("/certificates/new/"):
        # The form is ready once the page's script has loaded the policy.
        expect(page.get_by_test_id("create-button")).to_be_enabled()


@pytest.mark.parametrize("width", VIEWPORTS)
@pytest.mark.parametrize("name", DEVELOPER_PAGES)
def test_the_page_fits_the_screen(page, alice_at_work, name, width):
    open_page(page, DEVELOPER_PAGES[name].format(**alice_at_work), VIEWPORTS[width])

    check_layout(page)


@pytest.mark.parametrize("width", VIEWPORTS)
@pytest.mark.parametrize("name", DEVELOPER_PAGES)
def test_the_page_has_no_serious_accessibility_violation(page, alice_at_work, name, width):
    open_page(page, DEVELOPER_PAGES[name].format(**alice_at_work), VIEWPORTS[width])

    check_accessibility(page)


def test_the_account_menu_opens_and_lists_the_account_pages(page, alice_at_work):
    open_page(page, "/certificates/", VIEWPORTS["390px"])
    menu = page.get_by_test_id("account-menu")

    expect(menu.get_by_role("link", name="Email addresses")).to_be_hidden()
    menu.locator("summary").click()

    for name in ("Email addresses", "Password", "Two-factor sign-in"):
        expect(menu.get_by_role("link", name=name)).to_be_visible()
    expect(menu.get_by_role("button", name="Sign out")).to_be_visible()
    expect(menu).to_contain_text("alice@example.com")
    check_layout(page)  # the open menu stays on the screen


def test_the_checks_catch_what_they_look_for(page, live_server):
    # The guards themselves: a page made too wide, a navigation item over the brand, and an image without a text
    # alternative are reported.
    open_page(page, "/", VIEWPORTS["390px"])
    page.evaluate(
        "() => { document.querySelector('main').append(Object.assign(document.createElement('pre'),"
        " { textContent: 'x'.repeat(200) })); }"
    )
    with pytest.raises(AssertionError, match=r"wider than the 390 px viewport|scrolls sideways"):
        check_layout(page)

    open_page(page, "/", VIEWPORTS["390px"])
    page.evaluate(
        "() => { for (const el of [document.querySelector('[data-testid=brand]'),"
        " document.querySelector('[data-testid=site-nav] > a')]) {"
        " Object.assign(el.style, { position: 'absolute', left: '0', top: '0' }); } }"
    )
    with pytest.raises(AssertionError, match="overlapping in the header"):
        check_layout(page)

    open_page(page, "/", VIEWPORTS["390px"])
    check_accessibility(page)
    page.evaluate(
        "() => { const i = document.createElement('img'); i.src = '/static/favicon.svg';"
        " document.querySelector('main').append(i); }"
    )
    with pytest.raises(AssertionError, match="image-alt"):
        check_accessibility(page)


@pytest.mark.parametrize("model", ["certificate", "apitoken", "auditevent", "allowlistentry"])
def test_an_admin_list_shows_every_column_at_1280px(page, alice_at_work, charlie, sign_in, model):
    sign_in(charlie)
    open_page(page, f"/admin/certificates/{model}/", DESKTOP)

    table = page.locator("#result_list").bounding_box()
    room = page.locator("#changelist-form .results").bounding_box()
    assert table["x"] + table["width"] <= room["x"] + room["width"] + 1, (table, room)


@pytest.mark.parametrize("width", VIEWPORTS)
def test_the_admin_overview_fits_and_sync_now_says_it_is_queued(page, alice_at_work, charlie, sign_in, width):
    sign_in(charlie)
    open_page(page, "/admin/", VIEWPORTS[width])

    overview = page.get_by_test_id("zone-overview")
    expect(overview).to_contain_text("slots held")
    box = overview.bounding_box()
    assert box["x"] >= 0, box
    assert box["x"] + box["width"] <= VIEWPORTS[width]["width"], box
    page.get_by_role("button", name="Sync now").click()
    expect(page.locator(".messagelist")).to_contain_text("A firewall sync is queued")
