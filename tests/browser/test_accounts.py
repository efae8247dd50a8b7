"""Accounts in the browser: sign up, confirm the email through its link, sign in."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PASSWORD = "correct horse battery staple"
CONFIRMATION_LINK = re.compile(r"https?://\S+/accounts/confirm-email/\S+/")


def test_it_signs_up_confirms_the_email_and_signs_in(page, live_server):
    from allauth.account.models import EmailAddress

    page.goto("/accounts/signup/")
    page.get_by_label("Email").fill("dana@example.com")
    page.get_by_label("Password:", exact=True).fill(PASSWORD)
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
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    expect(page.get_by_test_id("emulator-banner")).to_be_visible()
    expect(page.get_by_test_id("emulator-banner")).to_contain_text("built-in Cloudflare emulator")
