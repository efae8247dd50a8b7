"""The Content-Security-Policy blocks nothing the portal's pages need (the `page` fixture fails on a violation)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.mark.parametrize(
    ("path", "visible"),
    [
        ("/", "mTLS developer portal"),
        ("/accounts/login/", "Sign In"),
        ("/accounts/signup/", "Sign Up"),
        ("/api/v1/docs", "/api/v1/certificates"),
    ],
)
def test_public_pages_work_under_the_policy(page, traffic, path, visible):
    response = page.goto(path)

    assert "script-src 'self'" in response.headers["content-security-policy"]
    expect(page.get_by_text(visible).first).to_be_visible()  # the API docs: Swagger UI ran and rendered
    assert traffic.page_errors == []


@pytest.mark.parametrize(
    ("path", "visible"),
    [
        ("/certificates/", "Certificates"),
        ("/certificates/new/", "New client certificate"),
        ("/accounts/2fa/", "Two-Factor Authentication"),
        ("/admin/", "The zone and the portal's records"),
    ],
)
def test_signed_in_pages_work_under_the_policy(page, traffic, sign_in, charlie, path, visible):
    sign_in(charlie)

    page.goto(path)

    expect(page.get_by_text(visible).first).to_be_visible()
    assert traffic.page_errors == []


def test_a_violation_is_caught(page, traffic, live_server):
    # The guard itself: an inline script on a portal page is blocked and reported.
    page.goto("/")
    page.evaluate("() => { const s = document.createElement('script'); s.textContent = '1'; document.body.append(s); }")
    page.wait_for_timeout(200)

    assert any("script-src" in violation for violation in traffic.csp_violations), traffic.console_errors
    traffic.csp_violations.clear()  # expected here; the fixture's check stays for every other test
