"""The networks page: refused lists change nothing and point at their lines, a list that admits nothing needs the
confirmation, merges and warnings are told, and the browser's own address is offered (from a trusted hop only)."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from certificates import services
from certificates.models import AllowlistEntry, AuditEvent

OFFICE = "93.184.216.0/24"
HOME = "8.8.4.4"  # a public address, as Cloudflare might see a developer's
PAGE = reverse("certificates:allowlist")


@pytest.fixture
def client(alice) -> Client:
    client = Client()
    client.force_login(alice)
    return client


def saved(user) -> list[str]:
    return services.allowlist_get(user=user)


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def test_the_page_shows_the_saved_list_and_labels_its_examples(client, alice):
    AllowlistEntry.objects.create(owner=alice, network="2606:4700::/32")
    AllowlistEntry.objects.create(owner=alice, network=OFFICE)

    response = client.get(PAGE)

    assert response.context["networks_text"] == f"{OFFICE}\n2606:4700::/32"  # IPv4 first, as saved
    assert "(documentation ranges that stand for yours: saved on their own, they are refused)" in " ".join(
        response.content.decode().split()
    )


def test_a_list_is_saved_and_the_page_says_what_happens_next(client, alice, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(PAGE, {"networks": f"# office\r\n{OFFICE}\r\n\r\n{HOME}\r\n"}, follow=True)

    assert response.redirect_chain == [(PAGE, 302)]
    assert saved(alice) == [f"{HOME}/32", OFFICE]
    assert messages_of(response) == ["Networks saved. The status below says when the firewall enforces them."]
    assert len(callbacks) == 1, "a firewall sync is queued"


def test_a_refused_list_changes_nothing_and_comes_back_as_typed_pointing_at_its_lines(client, alice):
    AllowlistEntry.objects.create(owner=alice, network=OFFICE)
    typed = f"# office\r\n{OFFICE}\r\n10.0.0.300/8\r\n8.8.4.4/16"

    response = client.post(PAGE, {"networks": typed})

    assert response.status_code == 400
    assert saved(alice) == [OFFICE]
    assert not AuditEvent.objects.exists()
    html = response.content.decode()
    assert f">{typed}</textarea>" in html
    assert '<li data-line="3">line 3: `10.0.0.300/8` is not an IPv4 or IPv6 address or network.</li>' in html
    assert '<li data-line="4">line 4: `8.8.4.4/16` has host bits set; did you mean 8.8.0.0/16?</li>' in html
    assert 'name="confirm_unreachable"' not in html, "a bad line is not something to confirm"


def test_a_list_only_of_private_ranges_is_refused_until_confirmed(client, alice):
    AllowlistEntry.objects.create(owner=alice, network=OFFICE)

    refused = client.post(PAGE, {"networks": "10.0.0.0/8\n192.168.0.0/16"})

    assert refused.status_code == 400
    assert saved(alice) == [OFFICE]
    html = refused.content.decode()
    assert "this list would block every request with your certificates" in html
    assert '<li data-line="1">line 1: 10.0.0.0/8 is a private range (RFC 1918).</li>' in html
    assert re.search(
        r'name="confirm_unreachable" value="yes"[^>]*>\s*I understand: <strong>every request with my '
        r"certificates will be blocked</strong>",
        html,
    )

    confirmed = client.post(PAGE, {"networks": "10.0.0.0/8\n192.168.0.0/16", "confirm_unreachable": "yes"}, follow=True)

    assert saved(alice) == ["10.0.0.0/8", "192.168.0.0/16"]
    assert "Saved as you confirmed: every request with your certificates will be blocked." in messages_of(confirmed)
    assert 'data-testid="admits-nothing"' in client.get(PAGE).content.decode(), "said on every visit, not only once"


def test_a_list_with_a_network_cloudflare_sees_is_not_said_to_block_everything(client, alice):
    AllowlistEntry.objects.create(owner=alice, network="10.0.0.0/8")
    AllowlistEntry.objects.create(owner=alice, network=OFFICE)

    assert 'data-testid="admits-nothing"' not in client.get(PAGE).content.decode()


def test_the_confirmation_does_not_excuse_a_bad_line(client, alice):
    response = client.post(PAGE, {"networks": "10.0.0.0/8\nnonsense", "confirm_unreachable": "yes"})

    assert response.status_code == 400
    assert not AllowlistEntry.objects.exists()


def test_merges_and_networks_that_admit_nothing_are_told_after_saving(client, alice):
    response = client.post(PAGE, {"networks": f"{OFFICE}\n93.184.216.34\n10.0.0.0/8\n{OFFICE}"}, follow=True)

    assert saved(alice) == ["10.0.0.0/8", OFFICE]
    assert messages_of(response)[1:] == [
        f"line 2: 93.184.216.34/32 is inside line 1's {OFFICE}; only {OFFICE} is kept.",
        f"line 4: {OFFICE} repeats line 1; kept once.",
        "line 3: 10.0.0.0/8 is a private range (RFC 1918); Cloudflare never sees it as a request's address, so it "
        "admits nothing.",
    ]


def test_an_empty_list_allows_any_address(client, alice):
    AllowlistEntry.objects.create(owner=alice, network=OFFICE)

    response = client.post(PAGE, {"networks": "\n# later\n"}, follow=True)

    assert saved(alice) == []
    assert "Your certificates will work from any address." in messages_of(response)[0]


def test_the_page_needs_csrf(alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)

    assert client.post(PAGE, {"networks": OFFICE}).status_code == 403
    assert not AllowlistEntry.objects.exists()


def test_each_user_sees_and_changes_only_their_own_list(client, alice, bob):
    AllowlistEntry.objects.create(owner=bob, network=OFFICE)

    assert OFFICE not in client.get(PAGE).content.decode()
    client.post(PAGE, {"networks": HOME})

    assert saved(bob) == [OFFICE]
    assert saved(alice) == [f"{HOME}/32"]


def test_signed_out_visitors_are_sent_to_sign_in():
    assert Client().get(PAGE)["Location"].startswith(reverse("account_login"))


# -- "add my current address" --------------------------------------------------------------------------------------


def offered(response) -> list[str]:
    return re.findall(r'data-add-network="([^"]+)"', response.content.decode())


def test_the_browsers_address_is_offered_as_one_network(client):
    response = client.get(PAGE, REMOTE_ADDR=HOME)

    assert offered(response) == [f"{HOME}/32"]
    assert f'<code data-testid="current-address">{HOME}</code>' in response.content.decode()


def test_an_ipv6_address_is_offered_alone_and_as_its_64(client):
    response = client.get(PAGE, REMOTE_ADDR="2606:4700:10:20:a:b:c:d")

    assert offered(response) == ["2606:4700:10:20:a:b:c:d/128", "2606:4700:10:20::/64"]


def test_without_trusted_proxies_forwarded_headers_are_ignored(client, settings):
    settings.TRUSTED_PROXY_COUNT = 0

    response = client.get(
        PAGE,
        REMOTE_ADDR=HOME,
        HTTP_X_FORWARDED_FOR="1.1.1.1",
        HTTP_CF_CONNECTING_IP="1.0.0.1",
        HTTP_X_REAL_IP="9.9.9.9",
    )

    assert offered(response) == [f"{HOME}/32"]


def test_behind_trusted_proxies_the_address_they_saw_is_offered(client, settings):
    # Cloudflare, then the TLS proxy, each append the address they saw; what the client wrote further left is not
    # trusted, and CF-Connecting-IP never is (a client reaching the origin directly could set it).
    settings.TRUSTED_PROXY_COUNT = 2

    response = client.get(
        PAGE,
        REMOTE_ADDR="10.0.0.2",
        HTTP_X_FORWARDED_FOR=f"1.1.1.1, {HOME}, 172.70.1.1",
        HTTP_CF_CONNECTING_IP="1.0.0.1",
    )

    assert offered(response) == [f"{HOME}/32"]


def test_an_address_cloudflare_never_sees_is_explained_not_offered(client):
    response = client.get(PAGE, REMOTE_ADDR="127.0.0.1")

    assert offered(response) == []
    assert "which is loopback: Cloudflare never sees it" in " ".join(response.content.decode().split())
