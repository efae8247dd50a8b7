"""Pages: owners see their certificates, others get 404, every form needs CSRF."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from certificates import services
from certificates.models import ApiToken, AuditEvent, Certificate
from tests.support.accounts import signed_in
from tests.support.pki import policy_csr


@pytest.fixture
def issued(emulator, alice) -> Certificate:
    return services.certificate_issue(
        user=alice, csr=policy_csr(alice), validity_days=365, name="build server", origin=services.Origin(actor=alice)
    )


def logged_in(user, *, csrf_checks: bool = False) -> Client:
    client = Client(enforce_csrf_checks=csrf_checks)
    client.force_login(user)
    return client


@pytest.mark.parametrize("name", ["certificates:dashboard", "certificates:new", "certificates:tokens"])
def test_pages_need_a_login(db, name):
    response = Client().get(reverse(name))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login"))


def test_the_dashboard_lists_the_owners_certificates_with_fingerprint(issued, alice, bob):
    mine = logged_in(alice).get(reverse("certificates:dashboard"))
    theirs = logged_in(bob).get(reverse("certificates:dashboard"))

    assert issued.fingerprint_sha256.encode() in mine.content
    assert b"days left" in mine.content
    assert issued.fingerprint_sha256.encode() not in theirs.content


@pytest.mark.parametrize("name", ["certificates:detail", "certificates:pem", "certificates:revoke"])
def test_another_users_certificate_pages_are_404(issued, bob, charlie, name):
    assert logged_in(bob).get(reverse(name, args=[issued.pk])).status_code == 404
    # Staff manage other people's certificates in the admin, not through the owner's pages.
    assert signed_in(charlie).get(reverse(name, args=[issued.pk])).status_code == 404


def test_the_detail_page_shows_the_history(issued, alice):
    response = logged_in(alice).get(reverse("certificates:detail", args=[issued.pk]))

    assert response.status_code == 200
    assert b"Certificate issued" in response.content
    assert b'data-testid="revoke"' in response.content


def test_the_pem_download_is_the_certificate_and_is_audited(issued, alice):
    response = logged_in(alice).get(reverse("certificates:pem", args=[issued.pk]))

    assert response.content.decode() == issued.certificate_pem
    assert response["Content-Disposition"] == 'attachment; filename="build-server.crt"'
    assert AuditEvent.objects.filter(action=AuditEvent.Action.DOWNLOADED, certificate=issued).exists()


def test_revoking_asks_for_confirmation_then_goes_pending(issued, alice):
    client = logged_in(alice)

    confirmation = client.get(reverse("certificates:revoke", args=[issued.pk]))
    assert b"Revoke the certificate" in confirmation.content
    assert Certificate.objects.get(pk=issued.pk).status == Certificate.Status.ACTIVE

    response = client.post(reverse("certificates:revoke", args=[issued.pk]), follow=True)
    assert Certificate.objects.get(pk=issued.pk).status == Certificate.Status.PENDING_REVOCATION
    assert b"Pending revocation" in response.content
    assert b"data-pending" in response.content, "the page refreshes itself while pending"


def test_another_user_cannot_revoke(issued, bob):
    assert logged_in(bob).post(reverse("certificates:revoke", args=[issued.pk])).status_code == 404
    assert Certificate.objects.get(pk=issued.pk).status == Certificate.Status.ACTIVE


@pytest.mark.parametrize(
    ("name", "needs_certificate"),
    [("certificates:revoke", True), ("certificates:tokens", False), ("account_logout", False)],
)
def test_every_form_needs_csrf(issued, alice, name, needs_certificate):
    url = reverse(name, args=[issued.pk]) if needs_certificate else reverse(name)
    assert logged_in(alice, csrf_checks=True).post(url, {"name": "x"}).status_code == 403
    assert Certificate.objects.get(pk=issued.pk).status == Certificate.Status.ACTIVE
    assert not ApiToken.objects.exists()


def test_token_revoke_needs_csrf_and_ownership(db, alice, bob):
    token, _secret = services.api_token_create(user=alice, name="ci", origin=services.Origin(actor=alice))
    url = reverse("certificates:token_revoke", args=[token.pk])

    assert logged_in(alice, csrf_checks=True).post(url).status_code == 403
    assert logged_in(bob).post(url).status_code == 404
    assert ApiToken.objects.get().is_active
    logged_in(alice).post(url)
    assert not ApiToken.objects.get().is_active


def test_a_new_token_is_shown_once_and_stored_hashed(db, alice):
    client = logged_in(alice)

    created = client.post(reverse("certificates:tokens"), {"name": "deploy"})
    shown = created.context["new_secret"]
    again = client.get(reverse("certificates:tokens"))

    assert shown.encode() in created.content
    assert created["Cache-Control"] == "no-store"
    assert shown.encode() not in again.content
    assert ApiToken.objects.get().token_sha256 == ApiToken.digest(shown)


def test_the_new_certificate_page_hands_the_browser_its_endpoints(db, alice):
    response = logged_in(alice).get(reverse("certificates:new"))

    assert response.status_code == 200
    assert response.context["issue_url"] == "/api/v1/certificates"
    assert response.context["policy_url"] == "/api/v1/csr-policy"
    assert response.context["download_event_url_template"] == "/api/v1/certificates/{id}/download-events"


def test_staff_without_two_factor_are_sent_to_set_it_up(db):
    from tests.conftest import make_user

    staff = make_user("dave", staff=True)
    response = logged_in(staff).get(reverse("certificates:dashboard"))

    assert response.status_code == 302
    assert response["Location"] == reverse("mfa_activate_totp")


def test_staff_with_two_factor_reach_the_admin(charlie):
    assert signed_in(charlie).get(reverse("admin:index")).status_code == 200


def test_the_staff_firewall_page_shows_the_plan(emulator, issued, charlie, settings):
    settings.PORTAL_API_HOSTNAMES = ["api.example.com"]

    response = signed_in(charlie).get(reverse("certificates:firewall"))

    assert response.status_code == 200
    assert b"mtls_portal_base" in response.content
    assert b"No sync has run yet" in response.content


def test_the_firewall_page_is_for_staff_only(db, alice):
    assert logged_in(alice).get(reverse("certificates:firewall")).status_code == 302


def test_renew_starts_a_new_certificate_with_the_same_name(issued, alice, bob):
    mine = logged_in(alice).get(reverse("certificates:new") + f"?renew={issued.pk}")
    theirs = logged_in(bob).get(reverse("certificates:new") + f"?renew={issued.pk}")

    assert mine.context["name_suggestion"] == "build server"
    assert theirs.context["name_suggestion"] != "build server"


def test_failed_logins_are_throttled(alice):
    client = Client()
    login = reverse("account_login")
    for _ in range(5):
        client.post(login, {"login": "alice@example.com", "password": "wrong"})

    response = client.post(login, {"login": "alice@example.com", "password": "correct horse battery staple"})

    assert not response.wsgi_request.user.is_authenticated
    assert b"Too many failed login attempts" in response.content


def test_a_renew_parameter_that_is_not_a_plain_number_is_ignored(issued, alice):
    response = logged_in(alice).get(reverse("certificates:new") + "?renew=%C2%B2")
    assert response.status_code == 200


def test_the_history_shows_addresses_only_of_the_owners_own_actions(issued, alice, charlie):
    services.certificate_revoke(
        certificate=issued, origin=services.Origin(actor=charlie, remote_addr="203.0.113.77"), reason="audit"
    )
    response = logged_in(alice).get(reverse("certificates:detail", args=[issued.pk]))
    assert b"203.0.113.77" not in response.content
    assert b"an administrator" in response.content


def test_the_admin_login_goes_through_the_portals_sign_in_with_two_factor(db):
    response = Client().get("/admin/login/?next=/admin/")

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login"))


def test_a_staff_member_with_totp_must_give_a_code_when_signing_in(charlie):
    client = Client()
    response = client.post(
        reverse("account_login"), {"login": "charlie@example.com", "password": "correct horse battery staple"}
    )

    assert response.status_code == 302
    assert response["Location"] == reverse("mfa_authenticate")
    assert client.get(reverse("admin:index")).status_code == 302  # not signed in until the code is given


@pytest.mark.parametrize(
    ("proxies", "forwarded", "expected"),
    [
        (0, "203.0.113.5", "127.0.0.1"),  # no trusted proxy: the header is the client's to forge
        (1, "198.51.100.9, 203.0.113.5", "203.0.113.5"),  # the one proxy appended the client's address
        (2, "198.51.100.9, 203.0.113.5, 10.0.0.2", "203.0.113.5"),
        (1, "", "127.0.0.1"),
        (1, "not-an-address", "127.0.0.1"),
    ],
)
def test_the_audit_log_records_the_client_address_behind_trusted_proxies(settings, rf, proxies, forwarded, expected):
    from certificates.views_helpers import client_address

    settings.TRUSTED_PROXY_COUNT = proxies
    request = rf.get("/", HTTP_X_FORWARDED_FOR=forwarded, REMOTE_ADDR="127.0.0.1")

    assert client_address(request) == expected
