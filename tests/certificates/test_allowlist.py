"""IP allowlists: normalized, host bits rejected, bounded, warnings for private ranges; page and API."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.urls import reverse

from certificates import services
from certificates.allowlist import AllowlistError, check_networks
from certificates.models import AllowlistEntry, AuditEvent


def test_it_normalizes_dedupes_and_sorts_v4_before_v6():
    checked = check_networks(
        ["2606:4700:0:0::/32", " 93.184.216.0/24", "93.184.216.0/24", "8.8.8.8", "2606:4700::/32", ""], max_networks=10
    )
    assert checked.networks == ("8.8.8.8/32", "93.184.216.0/24", "2606:4700::/32")
    assert checked.warnings == ()


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("192.0.2.1/24", "has host bits set; did you mean 192.0.2.0/24"),
        ("2001:db8::1/32", "did you mean 2001:db8::/32"),
        ("example.com", "is not an IPv4 or IPv6 address"),
        ("0.0.0.0/0", "every address"),
        ("::/0", "every address"),
        ("300.1.1.1", "is not an IPv4 or IPv6 address"),
    ],
)
def test_it_refuses_bad_entries_naming_them(entry, message):
    with pytest.raises(AllowlistError, match=message):
        check_networks([entry], max_networks=10)


def test_it_bounds_the_count():
    with pytest.raises(AllowlistError, match="at most 2 networks"):
        check_networks(["192.0.2.1", "192.0.2.2", "192.0.2.3"], max_networks=2)


def test_it_warns_about_ranges_cloudflare_never_sees():
    checked = check_networks(["10.0.0.0/8", "127.0.0.1", "fe80::/10", "203.0.113.0/24"], max_networks=10)
    assert len(checked.warnings) == 4  # 203.0.113.0/24 is documentation space: never routed either
    assert "10.0.0.0/8 is a private or reserved range" in checked.warnings[0]


def api_put(user, body, raw=None):
    secret = services.api_token_create(user=user, name="t", origin=services.Origin(actor=user))[1]
    return Client().put(
        "/api/v1/allowlist",
        data=raw if raw is not None else json.dumps(body),
        content_type="application/json",
        headers={"Authorization": f"Bearer {secret}"},
    )


def test_the_api_replaces_the_list_and_returns_warnings(alice, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        response = api_put(alice, {"networks": ["93.184.216.0/24", "10.1.0.0/16"]})

    assert response.status_code == 200
    assert response.json()["networks"] == ["10.1.0.0/16", "93.184.216.0/24"]
    assert len(response.json()["warnings"]) == 1
    assert len(callbacks) == 1, "a firewall sync is queued after the commit"
    assert api_put(alice, {"networks": []}).json() == {
        "networks": [],
        "warnings": [],
        "status": "waiting",
        "applied_at": None,
        "reason": "no firewall sync has run yet",
    }
    assert not AllowlistEntry.objects.exists()
    assert AuditEvent.objects.filter(action=AuditEvent.Action.ALLOWLIST_CHANGED).count() == 2


@pytest.mark.parametrize(
    ("body", "raw", "status"),
    [
        ({"networks": ["192.0.2.1/24"]}, None, 400),
        ({"networks": "192.0.2.0/24"}, None, 422),
        ({}, None, 422),
        (None, "[", 400),
        ({"networks": [f"192.0.2.{n}" for n in range(60)]}, None, 400),
    ],
)
def test_bad_input_changes_nothing(alice, body, raw, status):
    AllowlistEntry.objects.create(owner=alice, network="198.51.100.0/24")

    response = api_put(alice, body, raw=raw)

    assert response.status_code == status
    assert response.json()["detail"]
    assert list(AllowlistEntry.objects.values_list("network", flat=True)) == ["198.51.100.0/24"]


def test_each_user_sees_only_their_own_list(alice, bob):
    AllowlistEntry.objects.create(owner=alice, network="198.51.100.0/24")
    client = Client()
    client.force_login(bob)

    assert b"198.51.100.0/24" not in client.get(reverse("certificates:allowlist")).content
    assert client.get("/api/v1/allowlist").json()["networks"] == []


def test_the_page_saves_one_network_per_line_and_shows_errors(alice):
    client = Client()
    client.force_login(alice)

    saved = client.post(
        reverse("certificates:allowlist"), {"networks": "198.51.100.0/24\n2001:db8::/32\n"}, follow=True
    )
    refused = client.post(reverse("certificates:allowlist"), {"networks": "192.0.2.1/24"}, follow=True)

    assert b"Allowlist saved" in saved.content
    assert b"did you mean 192.0.2.0/24" in refused.content
    assert list(AllowlistEntry.objects.values_list("network", flat=True)) == ["198.51.100.0/24", "2001:db8::/32"]


def test_the_page_needs_csrf(alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    assert client.post(reverse("certificates:allowlist"), {"networks": "198.51.100.0/24"}).status_code == 403


def test_it_refuses_an_ipv6_zone_index():
    with pytest.raises(AllowlistError, match="zone index"):
        check_networks(["fe80::1%eth0"], max_networks=10)


def test_an_allowlist_too_long_for_one_rule_is_refused(alice, settings):
    settings.ALLOWLIST_MAX_NETWORKS = 500
    scattered = [f"2606:4700:{n:x}:{n:x}::/64" for n in range(200)]  # about 5,000 characters of networks

    with pytest.raises(services.PolicyError, match="too long to write into one firewall rule"):
        services.allowlist_set(user=alice, networks=scattered, origin=services.Origin(actor=alice))
    assert not AllowlistEntry.objects.exists()
