"""Staff sign-in has one door (allauth's sign-in with TOTP), and failed sign-ins are throttled fairly.

The attack these tests replay: a signed-in ordinary user (sign-up is open) posts a staff member's password to
Django's own admin login form, which asks for no code, and lands in the admin as that staff member.
"""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from tests.support.accounts import PASSWORD, sign_in, signed_in, totp_code

STAFF_PAGES = ["/admin/", "/admin/certificates/certificate/", "/staff/firewall/"]


@pytest.fixture(autouse=True)
def _emulated_cloudflare(emulator):
    """The staff firewall page reads the zone: the in-process emulator answers."""


def test_the_admin_login_form_cannot_sign_a_user_in_as_staff(alice, charlie):
    client = signed_in(alice)

    shown = client.get("/admin/login/?next=/admin/")
    posted = client.post(
        "/admin/login/?next=/admin/", {"username": charlie.username, "password": PASSWORD, "next": "/admin/"}
    )

    assert b'type="password"' not in shown.content
    assert shown.status_code == 403
    assert posted.status_code == 403
    assert client.get("/admin/").status_code == 302
    assert int(client.session["_auth_user_id"]) == alice.pk


def test_signed_out_visitors_are_sent_to_the_portals_sign_in_whatever_the_method(db, charlie):
    client = Client()

    for response in (
        client.get("/admin/login/?next=/admin/certificates/"),
        client.post("/admin/login/", {"username": charlie.username, "password": PASSWORD}),
    ):
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("account_login") + "?next=%2Fadmin%2F")
    assert "_auth_user_id" not in client.session


def test_the_admin_login_never_redirects_off_site(charlie):
    response = signed_in(charlie).get("/admin/login/?next=https://evil.example/")

    assert response["Location"] == reverse("admin:index")


def test_a_password_alone_does_not_open_staff_pages(charlie):
    client = Client()
    client.post(reverse("account_login"), {"login": charlie.email, "password": PASSWORD})

    for page in STAFF_PAGES:
        assert client.get(page).status_code == 302, page
    assert "_auth_user_id" not in client.session


@pytest.mark.parametrize("page", STAFF_PAGES)
def test_a_staff_session_without_a_code_in_this_session_is_asked_for_one(charlie, page):
    client = Client()
    client.force_login(charlie)  # a session some other door opened, with the password only

    response = client.get(page)

    assert response.status_code == 302
    assert response["Location"] == f"{reverse('mfa_reauthenticate')}?next={page.replace('/', '%2F')}"


def test_giving_the_code_opens_the_staff_pages_for_that_session(charlie):
    client = Client()
    client.force_login(charlie)

    answered = client.post(f"{reverse('mfa_reauthenticate')}?next=/admin/", {"code": totp_code(charlie)})

    assert answered.status_code == 302
    for page in STAFF_PAGES:
        assert client.get(page).status_code == 200, page


def test_a_wrong_code_does_not(charlie):
    client = Client()
    client.force_login(charlie)

    client.post(reverse("mfa_reauthenticate"), {"code": "000000" if totp_code(charlie) != "000000" else "111111"})

    assert client.get("/admin/").status_code == 302


def test_password_then_code_is_the_way_in(charlie):
    client = sign_in(Client(), charlie)

    assert client.get("/admin/").status_code == 200
    assert client.get("/staff/firewall/").status_code == 200


def test_staff_without_totp_set_up_reach_only_the_setup(db):
    from tests.conftest import make_user

    dave = make_user("dave", staff=True)
    client = sign_in(Client(), dave)

    assert client.get("/admin/")["Location"] == reverse("mfa_activate_totp")


# -- throttling --------------------------------------------------------------------------------------------------


def failed_sign_in(client: Client, email: str, **extra) -> bool:
    """Posts a wrong password; True when the portal said to wait instead of checking it."""
    response = client.post(reverse("account_login"), {"login": email, "password": "wrong password"}, **extra)
    assert response.status_code in (200, 429)
    return response.status_code == 429 or b"Too many failed login attempts" in response.content


def test_guessing_one_account_is_throttled(charlie):
    client = Client()

    refused = [failed_sign_in(client, charlie.email) for _ in range(30)]

    assert refused.index(True) == 5  # allauth's default: 5 failures per 5 minutes for one account at one client
    assert all(refused[5:])
    # Even the right password is not checked while throttled, so guessing cannot continue through it.
    response = client.post(reverse("account_login"), {"login": charlie.email, "password": PASSWORD})
    assert "_auth_user_id" not in client.session
    assert response.status_code in (200, 429)


def via_proxy(client_address: str) -> dict[str, str]:
    return {"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": client_address}


def test_behind_a_proxy_one_clients_failures_do_not_lock_out_another_client(settings, alice, bob):
    settings.TRUSTED_PROXY_COUNT = 1
    attacker = Client()
    for _ in range(12):
        failed_sign_in(attacker, alice.email, **via_proxy("203.0.113.66"))
        failed_sign_in(attacker, bob.email, **via_proxy("203.0.113.66"))
    assert failed_sign_in(attacker, alice.email, **via_proxy("203.0.113.66"))

    owner = Client()
    sign_in(owner, alice, **via_proxy("198.51.100.7"))
    assert int(owner.session["_auth_user_id"]) == alice.pk
    assert signed_in(bob).session["_auth_user_id"]


def test_a_forged_forwarded_for_does_not_escape_the_throttle(settings, alice):
    settings.TRUSTED_PROXY_COUNT = 1
    attacker = Client()

    # The client writes its own left-most entries; the proxy appends the real address, which is what counts.
    refused = [failed_sign_in(attacker, alice.email, **via_proxy(f"192.0.2.{n}, 203.0.113.66")) for n in range(1, 12)]

    assert refused[5]


def test_guessing_spread_over_many_addresses_meets_the_accounts_ceiling(settings, alice):
    settings.TRUSTED_PROXY_COUNT = 1
    settings.ACCOUNT_RATE_LIMITS = {**settings.ACCOUNT_RATE_LIMITS, "login_failed_account": "20/h/key"}
    attacker = Client()

    refused = [failed_sign_in(attacker, alice.email, **via_proxy(f"203.0.113.{n}")) for n in range(1, 30)]

    assert refused.index(True) == 20


def test_allauth_and_the_audit_log_see_the_same_client(settings, rf):
    from allauth.account.adapter import get_adapter

    from certificates.views_helpers import client_address

    settings.TRUSTED_PROXY_COUNT = 2
    request = rf.post("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="192.0.2.1, 203.0.113.9, 10.0.0.1")

    assert get_adapter().get_client_ip(request) == client_address(request) == "203.0.113.9"
