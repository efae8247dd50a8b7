"""The frame of every page: the navigation and account menu for who is signed in, and the favicon."""

from __future__ import annotations

from django.contrib.staticfiles import finders
from django.test import Client
from django.urls import reverse

from tests.support.accounts import signed_in


def test_a_visitor_is_offered_sign_in_and_sign_up_and_no_account_menu(db):
    page = Client().get(reverse("home")).content.decode()

    assert f'href="{reverse("account_login")}"' in page
    assert f'href="{reverse("account_signup")}"' in page
    assert 'data-testid="account-menu"' not in page


def test_a_developer_gets_the_sections_and_an_account_menu_but_no_staff_links(alice):
    page = signed_in(alice).get(reverse("certificates:tokens")).content.decode()

    for name in ("certificates:dashboard", "certificates:allowlist", "account_email", "mfa_index"):
        assert f'href="{reverse(name)}"' in page, name
    assert f'href="{reverse("certificates:tokens")}" aria-current="page"' in page
    assert 'data-testid="account-menu"' in page
    assert "alice@example.com" in page
    assert f'action="{reverse("account_logout")}"' in page
    assert f'href="{reverse("admin:index")}"' not in page
    assert f'href="{reverse("certificates:firewall")}"' not in page


def test_staff_also_get_the_firewall_and_the_admin(charlie):
    page = signed_in(charlie).get(reverse("certificates:dashboard")).content.decode()

    assert f'href="{reverse("certificates:firewall")}"' in page
    assert f'href="{reverse("admin:index")}"' in page


def test_an_account_page_is_in_the_portals_layout(alice):
    page = signed_in(alice).get(reverse("account_email")).content.decode()

    assert 'data-testid="brand"' in page
    assert 'class="account-page account-manage"' in page
    assert 'class="button"' in page  # allauth's buttons are the portal's (templates/allauth/elements/)


def test_favicon_ico_leads_to_the_static_icon_the_pages_link(db):
    response = Client().get("/favicon.ico")
    page = Client().get(reverse("home")).content.decode()

    assert response.status_code == 302
    assert response["Location"] == "/static/favicon.ico"
    assert finders.find("favicon.ico")
    assert finders.find("favicon.svg")
    assert 'rel="icon" href="/static/favicon.svg"' in page
