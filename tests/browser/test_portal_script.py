"""The shared page script (static/js/portal.js, built from frontend/src/portal.js): copy buttons, and a
pending certificate's page that refreshes itself from the status URL its markup names."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from certificates import services
from certificates.models import Certificate
from tests.support.pki import policy_csr

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def pending_revocation(emulator, alice) -> Certificate:
    certificate = services.certificate_issue(
        user=alice, csr=policy_csr(alice), validity_days=365, name="old-laptop", origin=services.Origin(actor=alice)
    )
    return services.certificate_revoke(certificate=certificate, origin=services.Origin(actor=alice))


def test_it_reloads_a_pending_certificate_once_its_status_changes(page, traffic, pending_revocation, alice, sign_in):
    sign_in(alice)
    page.goto(f"/certificates/{pending_revocation.pk}/")
    expect(page.get_by_test_id("status")).to_have_text("Pending revocation")

    Certificate.objects.filter(pk=pending_revocation.pk).update(status=Certificate.Status.REVOKED)

    expect(page.get_by_test_id("status")).to_have_text("Revoked", timeout=15_000)
    assert traffic.to("GET", f"/api/v1/certificates/{pending_revocation.pk}"), "polled the URL the markup names"
    assert traffic.page_errors == []


def test_a_copy_button_copies_its_text(page, context, pending_revocation, alice, sign_in):
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    sign_in(alice)
    page.goto("/certificates/")

    button = page.get_by_test_id("certificate-table").locator("button.copy")  # by class: its name changes
    button.click()

    expect(button).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == pending_revocation.fingerprint_sha256
    expect(button).to_have_text("Copy")
