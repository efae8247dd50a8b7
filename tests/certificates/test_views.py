"""Pages: owners see their certificates, others get 404, every form needs CSRF."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.conf import settings
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django.utils.timezone import localtime

from certificates import listing, services
from certificates.models import ApiToken, AuditEvent, Certificate, CertificateAuthority
from tests.support.accounts import signed_in
from tests.support.listing import certificate_rows, expected_order
from tests.support.pki import policy_csr
from tests.support.portal_ca import trusted_portal_ca


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


def test_the_detail_page_names_cloudflares_managed_ca_with_no_links(issued, alice):
    response = logged_in(alice).get(reverse("certificates:detail", args=[issued.pk]))

    assert response.context["issuer"]["kind"] == "cloudflare_managed"
    assert b"Cloudflare managed CA" in response.content
    assert b'data-testid="issuer-crl"' not in response.content  # Cloudflare publishes neither its CA nor a CRL


def test_the_detail_page_of_a_portal_ca_certificate_links_the_ca_and_its_crl_for_origins(emulator, alice):
    authority = trusted_portal_ca(name="Example API CA")
    certificate = services.certificate_issue(
        user=alice, csr=policy_csr(alice), validity_days=30, name="laptop", origin=services.Origin(actor=alice)
    )
    page = logged_in(alice).get(reverse("certificates:detail", args=[certificate.pk]))

    links = {
        name: re.search(rf'href="([^"]+)" data-testid="{name}"', page.content.decode()).group(1)
        for name in ("issuer-ca", "issuer-crl", "issuer-crl-pem")
    }
    base = settings.PORTAL_BASE_URL
    assert b"Example API CA" in page.content
    assert links == {
        "issuer-ca": f"{base}/pki/ca-{authority.pk}.pem",
        "issuer-crl": f"{base}/pki/ca-{authority.pk}.crl",
        "issuer-crl-pem": f"{base}/pki/ca-{authority.pk}.crl.pem",
    }
    # The links answer anyone (an origin has no session), with the CA and the CRL it signed.
    anonymous = Client()
    ca = x509.load_pem_x509_certificate(anonymous.get(links["issuer-ca"].removeprefix(base)).content)
    crl = x509.load_der_x509_crl(anonymous.get(links["issuer-crl"].removeprefix(base)).content)
    crl_pem = x509.load_pem_x509_crl(anonymous.get(links["issuer-crl-pem"].removeprefix(base)).content)
    assert ca.subject == x509.load_pem_x509_certificate(certificate.certificate_pem.encode()).issuer
    assert crl.is_signature_valid(ca.public_key())
    assert crl_pem.public_bytes(serialization.Encoding.DER) == crl.public_bytes(serialization.Encoding.DER)


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
    assert logged_in(bob).get(url).status_code == 404
    assert ApiToken.objects.get().is_active
    logged_in(alice).post(url)
    assert not ApiToken.objects.get().is_active


def test_revoking_a_token_asks_first(db, alice):
    token, _secret = services.api_token_create(user=alice, name="deploy", origin=services.Origin(actor=alice))
    url = reverse("certificates:token_revoke", args=[token.pk])
    client = logged_in(alice)

    listed = client.get(reverse("certificates:tokens"))
    confirmation = client.get(url)

    assert url.encode() in listed.content  # the list links to the confirmation page, it does not revoke
    assert confirmation.status_code == 200
    assert "Revoke the token “deploy”?" in confirmation.content.decode()
    assert b'method="post"' in confirmation.content
    assert ApiToken.objects.get().is_active  # looking at the question revokes nothing
    assert client.post(url).status_code == 302
    assert not ApiToken.objects.get().is_active


def create_token(client: Client, **fields: str):
    return client.post(reverse("certificates:tokens"), {"name": "deploy", **fields})


def test_creating_a_token_is_post_redirect_get_and_shows_the_secret_once(db, alice):
    client = logged_in(alice)

    created = create_token(client)
    shown_page = client.get(created["Location"])
    reloaded = client.get(created["Location"])  # a browser's reload repeats the GET after a redirect

    assert created.status_code == 302
    assert created["Location"] == reverse("certificates:tokens")
    assert ApiToken.objects.count() == 1
    secret = shown_page.context["new_secret"]
    assert ApiToken.objects.get().token_sha256 == ApiToken.digest(secret)
    assert secret.encode() in shown_page.content
    assert shown_page["Cache-Control"] == "no-store"
    assert secret.encode() not in reloaded.content
    assert reloaded.context["new_secret"] is None
    assert ApiToken.objects.count() == 1
    assert not any(secret in str(value) for value in client.session.values())  # not left in the session


def test_a_token_gets_the_chosen_lifetime_and_scope(db, alice):
    client = logged_in(alice)

    create_token(client, days="7", scope=ApiToken.Scope.READ_ONLY)
    page = client.get(reverse("certificates:tokens")).content.decode()

    token = ApiToken.objects.get()
    assert token.scope == ApiToken.Scope.READ_ONLY
    assert 6 < (token.expires_at - token.created_at).total_seconds() / 86400 <= 7
    assert "read-only" in page
    assert f"{localtime(token.expires_at):%Y-%m-%d}" in page


def test_a_token_without_a_chosen_lifetime_gets_the_default(db, alice, settings):
    settings.API_TOKEN_DEFAULT_DAYS = 30

    create_token(logged_in(alice), days="")

    token = ApiToken.objects.get()
    assert round((token.expires_at - token.created_at).total_seconds() / 86400) == 30
    assert token.scope == ApiToken.Scope.READ_WRITE


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"days": "400"}, "A token lasts from 1 to 365 days"),
        ({"days": "0"}, "A token lasts from 1 to 365 days"),
        ({"days": "soon"}, "whole number of days"),
        ({"days": "-3"}, "whole number of days"),
        ({"scope": "admin"}, "read-only or read-write"),
        ({"name": " "}, "Give the token a name"),
    ],
    ids=["over-the-cap", "zero", "not-a-number", "negative", "unknown-scope", "no-name"],
)
def test_a_refused_token_says_why_and_makes_nothing(db, alice, settings, fields, message):
    settings.API_TOKEN_MAX_DAYS = 365
    client = logged_in(alice)

    response = create_token(client, **fields)
    page = client.get(response["Location"])

    assert response.status_code == 302
    assert message in page.content.decode()
    assert page.context["new_secret"] is None
    assert not ApiToken.objects.exists()


def test_the_tokens_page_shows_expiry_and_last_use(db, alice):
    token, secret = services.api_token_create(user=alice, name="ci", origin=services.Origin(actor=alice))
    services.api_token_authenticate(secret)
    token.refresh_from_db()

    page = logged_in(alice).get(reverse("certificates:tokens")).content.decode()

    assert token.last_used_at is not None
    assert f'<td data-label="Last used">{localtime(token.last_used_at):%Y-%m-%d %H:%M}</td>' in page
    assert f"{localtime(token.expires_at):%Y-%m-%d %H:%M}" in page
    assert "read-write" in page


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
    assert theirs.status_code == 404  # another user's certificate is not revealed


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


# -- the dashboard, a page at a time ----------------------------------------------------------------------------


def listed_ids(response) -> list[int]:
    return [int(found) for found in re.findall(r'data-certificate-id="(\d+)"', response.content.decode())]


def link(response, testid: str) -> str | None:
    found = re.search(rf'<a href="([^"]*)"[^>]*data-testid="{testid}"', response.content.decode())
    return html.unescape(found[1]) if found else None


def test_the_dashboard_hides_revoked_and_expired_ones_until_all_is_chosen(alice):
    certificate_rows(alice, 12)
    client = logged_in(alice)

    default = client.get(reverse("certificates:dashboard"))
    everything = client.get(reverse("certificates:dashboard"), {"status": "all"})
    revoked = client.get(reverse("certificates:dashboard"), {"status": "revoked"})

    # By default: usable ones and those in progress (a pending revocation is still the user's business).
    assert listed_ids(default) == expected_order(alice, "-created_at", statuses=listing.CURRENT_STATUSES)
    assert 'data-status="revoked"' not in default.content.decode()
    assert '<a href="?status=all&amp;sort=-created_at">All</a>' in default.content.decode()
    assert listed_ids(everything) == expected_order(alice, "-created_at")
    assert listed_ids(revoked) == expected_order(alice, "-created_at", statuses={"revoked"})


@pytest.mark.parametrize(("status", "sort"), [("all", "-created_at"), ("active", "expires_on"), ("all", "expires_on")])
def test_the_dashboard_pages_through_120_each_once_in_order(alice, status, sort):
    certificate_rows(alice, 120)
    client = logged_in(alice)
    page = client.get(reverse("certificates:dashboard"), {"status": status, "sort": sort})
    assert link(page, "first-page") is None
    ids = listed_ids(page)
    while next_page := link(page, "next-page"):
        page = client.get(reverse("certificates:dashboard") + next_page)
        assert link(page, "first-page") == f"?status={status}&sort={sort}"
        ids += listed_ids(page)

    statuses = None if status == "all" else Certificate.USABLE
    assert ids == expected_order(alice, sort, statuses=statuses)
    assert len(set(ids)) == len(ids)


def test_the_dashboard_shows_no_other_users_rows(alice, bob):
    certificate_rows(bob, 30)

    response = logged_in(alice).get(reverse("certificates:dashboard"), {"status": "all"})

    assert listed_ids(response) == []
    assert b"You have no certificates yet" in response.content


def test_an_empty_filter_offers_all_and_a_new_user_is_shown_how_to_start(alice, bob):
    certificate_rows(alice, 1)  # an active one
    Certificate.objects.filter(owner=alice).update(status=Certificate.Status.REVOKED)

    alices = logged_in(alice).get(reverse("certificates:dashboard")).content.decode()
    bobs = logged_in(bob).get(reverse("certificates:dashboard")).content.decode()

    assert 'data-testid="none-here"' in alices
    assert "You have no certificates yet" not in alices
    assert "You have no certificates yet" in bobs


@pytest.mark.parametrize(
    "query",
    [{"status": "gone"}, {"sort": "name"}, {"cursor": "garbage"}, {"cursor": "x" * 5000}, {"status": "", "sort": ""}],
)
def test_the_dashboard_ignores_parameters_it_does_not_know(alice, query):
    certificate_rows(alice, 12)

    response = logged_in(alice).get(reverse("certificates:dashboard"), query)

    assert response.status_code == 200
    assert listed_ids(response) == expected_order(alice, "-created_at", statuses=listing.CURRENT_STATUSES)


def test_the_dashboard_costs_the_same_queries_for_10_or_120_certificates(alice):
    client = logged_in(alice)
    ca = trusted_portal_ca()
    certificate_rows(alice, 10, authority=ca)
    client.get(reverse("certificates:dashboard"))
    with CaptureQueriesContext(connection) as few:
        client.get(reverse("certificates:dashboard"), {"status": "all"})
    certificate_rows(alice, 110, authority=ca)
    with CaptureQueriesContext(connection) as many:
        response = client.get(reverse("certificates:dashboard"), {"status": "all"})

    assert len(listed_ids(response)) == 50
    assert len(few) == len(many), [query["sql"] for query in many.captured_queries]


def test_the_dashboard_reads_no_csr_or_pem(alice):
    """They are most of a row's bytes and the page shows neither (issue #12: the heavy user's page); nor the portal
    CA's key, CRL and PEMs, which a join would otherwise repeat on every row."""
    client = logged_in(alice)
    certificate_rows(alice, 3, authority=trusted_portal_ca())
    with CaptureQueriesContext(connection) as captured:
        response = client.get(reverse("certificates:dashboard"), {"status": "all"})

    assert len(listed_ids(response)) == 3
    listing_sql = [q["sql"] for q in captured.captured_queries if 'FROM "certificates_certificate"' in q["sql"]]
    assert listing_sql
    unread = ('"certificates_certificate"."csr"', '"certificates_certificate"."certificate_pem"')
    unread += tuple(f'"certificates_certificateauthority"."{name}"' for name in CertificateAuthority.BULK_FIELDS)
    assert not [column for sql in listing_sql for column in unread if column in sql]


def test_the_expiry_warning_names_ten_and_counts_the_rest(alice):
    client = logged_in(alice)
    rows = certificate_rows(alice, 14, authority=trusted_portal_ca())
    soon = timezone.now() + timedelta(days=5)
    Certificate.objects.filter(pk__in=[row.pk for row in rows]).update(
        status=Certificate.Status.ACTIVE, expires_on=soon
    )

    content = client.get(reverse("certificates:dashboard")).content.decode()

    assert "14 certificates expire soon" in content
    assert content.count('data-testid="expiry-renew"') == 10
    assert 'data-testid="expiry-more"' in content


def test_the_dashboard_finds_own_certificates_by_name_or_fingerprint_never_anothers(alice, bob):
    mine = certificate_rows(alice, 3)
    theirs = certificate_rows(bob, 1)[0]  # named "row-0" too
    client = logged_in(alice)

    def found(q: str) -> list[int]:
        return listed_ids(client.get(reverse("certificates:dashboard"), {"status": "all", "q": q}))

    assert found("ROW-1") == [mine[1].pk]
    assert found("row-0") == [mine[0].pk]
    with_colons = ":".join(re.findall("..", mine[2].fingerprint_sha256.upper()))
    assert found(with_colons) == [mine[2].pk]
    assert found(theirs.fingerprint_sha256) == []


def test_the_dashboards_pages_keep_the_search(alice):
    rows = certificate_rows(alice, 120)
    Certificate.objects.filter(pk__in=[row.pk for row in rows[::3]]).update(name="other")
    client = logged_in(alice)
    query: str | None = "?status=all&q=row"
    seen: list[int] = []
    while query:
        response = client.get(reverse("certificates:dashboard") + query)
        seen += listed_ids(response)
        query = link(response, "next-page")
        assert query is None or "q=row" in query

    assert sorted(seen) == sorted(row.pk for row in rows if row not in rows[::3])
