"""After issuance: the dashboard, revocation by the owner, reactivation by an administrator in Django admin."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from certificates import services
from certificates.models import AuditEvent, Certificate
from tests.browser.support import create_certificate, download
from tests.support.pki import policy_csr

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHANGELIST = "/admin/certificates/certificate/"


def test_it_lists_the_new_certificate_and_the_owner_revokes_it(page, alice, sign_in, live_server):
    sign_in(alice)
    issued = create_certificate(page, name="ci-runner")
    download(page, "download-key")  # saved: leaving the page is safe now
    page.get_by_test_id("dashboard-link").click()

    expect(page).to_have_url(f"{live_server.url}/certificates/")
    row = page.get_by_test_id("certificate-table").locator(f'tr[data-certificate-id="{issued.id}"]')
    expect(row).to_have_attribute("data-status", "active")
    expect(row.get_by_test_id("status")).to_have_text("Active")
    expect(row.locator("code.fingerprint")).to_have_text(issued.fingerprint_sha256)
    expect(row).to_contain_text("day")  # "(N days left)"

    row.get_by_role("link", name="ci-runner").click()
    expect(page).to_have_url(f"{live_server.url}{issued.detail_url}")
    expect(page.get_by_test_id("status")).to_have_text("Active")
    expect(page.get_by_test_id("fingerprint")).to_have_text(issued.fingerprint_sha256)
    expect(page.get_by_test_id("history")).to_contain_text("issued")

    page.get_by_test_id("revoke").click()
    expect(page.get_by_role("heading")).to_have_text("Revoke “ci-runner”?")
    expect(page.locator("main")).to_contain_text(issued.fingerprint_sha256)
    assert Certificate.objects.get(pk=issued.id).status == Certificate.Status.ACTIVE  # asking changes nothing
    page.get_by_test_id("confirm-revoke").click()

    expect(page).to_have_url(f"{live_server.url}{issued.detail_url}")
    expect(page.get_by_role("status")).to_contain_text("Revocation requested")
    expect(page.get_by_test_id("status")).to_have_text("Pending revocation")
    expect(page.get_by_test_id("revoke")).to_have_count(0)
    expect(page.get_by_test_id("history")).to_contain_text("Active → Pending revocation")
    certificate = Certificate.objects.get(pk=issued.id)
    assert certificate.status == Certificate.Status.PENDING_REVOCATION
    event = certificate.events.get(action=AuditEvent.Action.REVOCATION_REQUESTED)
    assert event.actor == alice
    assert event.detail == {"reason": "revoked by owner"}

    page.goto("/certificates/")
    expect(page.locator(f'tr[data-certificate-id="{issued.id}"]')).to_have_attribute(
        "data-status", "pending_revocation"
    )


@pytest.fixture
def pending_revocation(emulator, alice) -> Certificate:
    certificate = services.certificate_issue(
        user=alice, csr=policy_csr(alice), validity_days=365, name="old-laptop", origin=services.Origin(actor=alice)
    )
    return services.certificate_revoke(certificate=certificate, origin=services.Origin(actor=alice))


def select_in_changelist(page, certificate: Certificate, action: str) -> None:
    page.goto(CHANGELIST)
    page.locator(f'input[name="_selected_action"][value="{certificate.pk}"]').check()
    page.locator('select[name="action"]').select_option(action)
    page.get_by_role("button", name="Go").click()


def test_it_lets_an_administrator_reactivate_a_certificate_pending_revocation(
    page, pending_revocation, alice, charlie, sign_in
):
    other = services.certificate_issue(
        user=alice, csr=policy_csr(alice), validity_days=365, name="new-laptop", origin=services.Origin(actor=alice)
    )
    sign_in(charlie)  # staff: password and TOTP code

    page.goto(CHANGELIST)
    expect(page.locator("#result_list")).to_contain_text("old-laptop")
    expect(page.locator("#result_list")).to_contain_text("Pending revocation")
    select_in_changelist(page, pending_revocation, "reactivate_selected")

    expect(page).to_have_url(re.compile(re.escape(CHANGELIST) + r"$"))
    expect(page.locator(".messagelist .success")).to_have_text("1 certificate reactivated (pending at Cloudflare).")
    expect(page.locator(".messagelist .error")).to_have_count(0)
    row = page.locator("#result_list tr", has=page.locator(f'input[value="{pending_revocation.pk}"]'))
    expect(row).to_contain_text("Pending reactivation")
    pending_revocation.refresh_from_db()
    assert pending_revocation.status == Certificate.Status.PENDING_REACTIVATION
    assert pending_revocation.events.get(action=AuditEvent.Action.REACTIVATION_REQUESTED).actor == charlie
    other.refresh_from_db()
    assert other.status == Certificate.Status.ACTIVE  # not selected, not touched


def test_it_asks_the_administrator_for_a_reason_before_revoking(page, emulator, alice, charlie, sign_in):
    certificate = services.certificate_issue(
        user=alice, csr=policy_csr(alice), validity_days=365, name="kiosk", origin=services.Origin(actor=alice)
    )
    sign_in(charlie)

    select_in_changelist(page, certificate, "revoke_selected")

    expect(page.get_by_role("heading", name="Revoke 1 certificate")).to_be_visible()
    expect(page.locator("#content")).to_contain_text(certificate.fingerprint_sha256)
    certificate.refresh_from_db()
    assert certificate.status == Certificate.Status.ACTIVE
    page.get_by_label("Reason").fill("device stolen")
    page.get_by_role("button", name="Revoke").click()

    expect(page.locator(".messagelist .success")).to_have_text("1 certificate revoked (pending at Cloudflare).")
    certificate.refresh_from_db()
    assert certificate.status == Certificate.Status.PENDING_REVOCATION
    event = certificate.events.get(action=AuditEvent.Action.REVOCATION_REQUESTED)
    assert (event.actor, event.detail) == (charlie, {"reason": "device stolen"})
