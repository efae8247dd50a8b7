"""PUT/GET /api/v1/allowlist: the page's checks, entries named by number, the confirmation as a field."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from certificates.models import AllowlistEntry, AuditEvent
from tests.support.api import token_for

OFFICE = "93.184.216.0/24"


def put(user, body=None, raw=None):
    return Client().put(
        "/api/v1/allowlist",
        data=raw if raw is not None else json.dumps(body),
        content_type="application/json",
        headers={"Authorization": f"Bearer {token_for(user)}"},
    )


def saved(user) -> list[str]:
    return list(AllowlistEntry.objects.filter(owner=user).values_list("network", flat=True))


def test_it_replaces_the_list_and_says_what_it_merged_and_what_admits_nothing(
    alice, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        response = put(alice, {"networks": [OFFICE, "10.1.0.0/16", "93.184.216.34"]})

    assert response.status_code == 200
    body = response.json()
    assert body["networks"] == ["10.1.0.0/16", OFFICE]
    assert body["notices"] == [f"entry 3: 93.184.216.34/32 is inside entry 1's {OFFICE}; only {OFFICE} is kept."]
    assert body["warnings"] == [
        "entry 2: 10.1.0.0/16 is a private range (RFC 1918); Cloudflare never sees it as a request's address, so it "
        "admits nothing."
    ]
    assert (body["status"], body["applied_at"], body["reason"]) == ("waiting", None, "no firewall sync has run yet")
    assert len(callbacks) == 1, "a firewall sync is queued after the commit"


def test_an_empty_list_allows_any_address(alice):
    AllowlistEntry.objects.create(owner=alice, network=OFFICE)

    response = put(alice, {"networks": []})

    assert response.json()["networks"] == []
    assert not AllowlistEntry.objects.exists()


def test_a_list_only_of_networks_cloudflare_never_sees_is_a_400_naming_the_field(alice):
    AllowlistEntry.objects.create(owner=alice, network=OFFICE)

    response = put(alice, {"networks": ["10.0.0.0/8", "2001:db8::/32"]})

    assert response.status_code == 400
    assert response.json()["detail"] == (
        "Cloudflare never sees any of these networks as a request's address, so every request with your certificates "
        "would be blocked: entry 1: 10.0.0.0/8 is a private range (RFC 1918). entry 2: 2001:db8::/32 is a "
        'documentation range (RFC 3849). Send "confirm_unreachable": true to save it anyway.'
    )
    assert saved(alice) == [OFFICE]


def test_confirmed_it_is_saved(alice):
    response = put(alice, {"networks": ["10.0.0.0/8"], "confirm_unreachable": True})

    assert response.status_code == 200
    assert saved(alice) == ["10.0.0.0/8"]
    assert AuditEvent.objects.get(action=AuditEvent.Action.ALLOWLIST_CHANGED).detail["confirmed_unreachable"] is True


@pytest.mark.parametrize(
    ("body", "raw", "status", "detail"),
    [
        ({"networks": [OFFICE, "93.184.216.1/24"]}, None, 400, "entry 2: `93.184.216.1/24` has host bits set"),
        ({"networks": ["nonsense"], "confirm_unreachable": True}, None, 400, "entry 1: `nonsense` is not an IPv4"),
        ({"networks": [f"8.8.{n}.0/24" for n in range(60)]}, None, 400, "at most 50 networks"),
        ({"networks": OFFICE}, None, 422, ""),
        ({"networks": [OFFICE], "confirm_unreachable": "please"}, None, 422, ""),
        ({}, None, 422, ""),
        (None, "[", 400, ""),
    ],
)
def test_bad_input_is_a_4xx_that_changes_nothing(alice, body, raw, status, detail):
    AllowlistEntry.objects.create(owner=alice, network="8.8.8.0/24")

    response = put(alice, body, raw=raw)

    assert response.status_code == status
    assert detail in response.json()["detail"]
    assert saved(alice) == ["8.8.8.0/24"]


def test_the_schema_documents_the_confirmation_and_the_notices():
    schema = Client().get("/api/v1/openapi.json").json()["components"]["schemas"]

    assert "blocks every request" in schema["AllowlistIn"]["properties"]["confirm_unreachable"]["description"]
    assert "notices" in schema["AllowlistOut"]["properties"]


def test_get_warns_about_saved_networks_that_admit_nothing(alice):
    AllowlistEntry.objects.create(owner=alice, network=OFFICE)
    AllowlistEntry.objects.create(owner=alice, network="192.168.0.0/16")

    response = Client().get("/api/v1/allowlist", headers={"Authorization": f"Bearer {token_for(alice)}"})

    assert response.json()["networks"] == ["93.184.216.0/24", "192.168.0.0/16"]
    assert response.json()["warnings"] == [
        "entry 2: 192.168.0.0/16 is a private range (RFC 1918); Cloudflare never sees it as a request's address, so "
        "it admits nothing."
    ]


def test_each_user_gets_only_their_own_list(alice, bob):
    AllowlistEntry.objects.create(owner=alice, network=OFFICE)

    response = Client().get("/api/v1/allowlist", headers={"Authorization": f"Bearer {token_for(bob)}"})

    assert response.json()["networks"] == []
