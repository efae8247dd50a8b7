"""Accounts in the browser: sign up, confirm the email through its link, sign in; the account pages in the
portal's layout at 390 px and 1280 px, without serious accessibility violations."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from playwright.sync_api import expect

from tests.browser.support import VIEWPORTS, check_accessibility, check_layout

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PASSWORD = "correct horse battery staple"
CONFIRMATION_LINK = re.compile(r"https?://\S+/accounts/confirm-email/\S+/")


def test_it_signs_up_confirms_the_email_and_signs_in(page, live_server):
    from allauth.account.models import EmailAddress

    page.goto("/accounts/signup/")
    page.get_by_label("Email").fill("dana@example.com")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password (again)").fill(PASSWORD)
    page.get_by_role("button", name="Sign Up").click()

    expect(page.get_by_role("heading", name="Verify Your Email Address")).to_be_visible()
    # Verification is mandatory: the new account is not signed in yet.
    page.goto("/certificates/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/certificates/$"))

    assert [m.to for m in mail.outbox] == [["dana@example.com"]]
    link = CONFIRMATION_LINK.search(mail.outbox[0].body)
    assert link, mail.outbox[0].body
    assert link.group(0).startswith(live_server.url)
    page.goto(link.group(0))
    expect(page.get_by_role("heading", name="Confirm Email Address")).to_be_visible()
    page.get_by_role("button", name="Confirm").click()

    expect(page.get_by_role("status")).to_contain_text("You have confirmed dana@example.com")
    assert EmailAddress.objects.get(email="dana@example.com").verified
    expect(page).to_have_url(re.compile(r"/accounts/login/$"))
    page.get_by_label("Email").fill("dana@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign In").click()

    expect(page).to_have_url(f"{live_server.url}/certificates/")
    expect(page.get_by_role("heading", name="Your certificates")).to_be_visible()
    page.get_by_test_id("account-menu").locator("summary").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    expect(page.get_by_test_id("emulator-banner")).to_be_visible()
    expect(page.get_by_test_id("emulator-banner")).to_contain_text("built-in Cloudflare emulator")


# The account pages (allauth's, in the portal's layout): signed out, and signed in as alice.
SIGNED_OUT_ACCOUNT_PAGES = {
    "sign-in": "/accounts/login/",
    "sign-up": "/accounts/signup/",
    "password-reset": "/accounts/password/reset/",
    "password-reset-sent": "/accounts/password/reset/done/",
    "password-reset-bad-link": "/accounts/password/reset/key/1-set-password/",
    "verification-sent": "/accounts/confirm-email/",
}
SIGNED_IN_ACCOUNT_PAGES = {
    "email": "/accounts/email/",
    "password-change": "/accounts/password/change/",
    "two-factor": "/accounts/2fa/",
    "reauthenticate": "/accounts/reauthenticate/",
    "totp-activate": "/accounts/2fa/totp/activate/",  # after the password is asked again (reauthenticate)
    "sign-out": "/accounts/logout/",
}


def open_account_page(page, request, name: str, width: str) -> None:
    if name in SIGNED_IN_ACCOUNT_PAGES:
        request.getfixturevalue("sign_in")(request.getfixturevalue("alice"))
    path = SIGNED_OUT_ACCOUNT_PAGES.get(name) or SIGNED_IN_ACCOUNT_PAGES[name]
    page.set_viewport_size(VIEWPORTS[width])
    response = page.goto(path)
    if name == "totp-activate":
        page.get_by_label("Password").fill(PASSWORD)
        with page.expect_navigation() as navigation:
            page.get_by_role("button", name="Confirm").click()
        response = navigation.value
    assert response.status == 200, (path, response.status)
    assert response.url.endswith(path), f"{path} went to {response.url}"


@pytest.mark.parametrize("width", VIEWPORTS)
@pytest.mark.parametrize("name", [*SIGNED_OUT_ACCOUNT_PAGES, *SIGNED_IN_ACCOUNT_PAGES])
def test_an_account_page_is_in_the_portals_layout_and_fits_the_screen(page, request, name, width):
    open_account_page(page, request, name, width)

    expect(page.get_by_test_id("brand")).to_be_visible()  # the portal's header, not allauth's bare page
    expect(page.locator("main.content h1")).to_have_count(1)
    check_layout(page)


@pytest.mark.parametrize("width", VIEWPORTS)
@pytest.mark.parametrize("name", [*SIGNED_OUT_ACCOUNT_PAGES, *SIGNED_IN_ACCOUNT_PAGES])
def test_an_account_page_has_no_serious_accessibility_violation(page, request, name, width):
    open_account_page(page, request, name, width)

    check_accessibility(page)


def test_the_sign_in_form_shows_its_errors_in_the_portals_style(page, alice):
    page.goto("/accounts/login/")
    page.get_by_label("Email").fill("alice@example.com")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign In").click()

    error = page.locator("main.content .form-errors")
    expect(error).to_contain_text("The email address and/or password you specified are not correct.")
    check_accessibility(page)
