"""Whether each user's networks are in force at the edge, and what staff are told about the last sync.

FirewallState is set directly: the sync that writes it is tested on its own (test_firewall_sync.py).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from django.test import Client
from django.urls import reverse

from certificates import services
from certificates.firewall.status import SYNC_FAILED, allowlist_status
from certificates.models import AuditEvent, FirewallState
from tests.support.accounts import signed_in

ZONE = "0" * 32
INTERNAL_ERROR = "APIError 10000 on PATCH /zones/0000/rulesets/abc: token 1f2e lacks zone.waf"


@pytest.fixture(autouse=True)
def zone(settings):
    settings.CLOUDFLARE_ZONE_ID = ZONE


def set_networks(user, networks: list[str]):
    services.allowlist_set(user=user, networks=networks, origin=services.Origin(actor=user))
    return AuditEvent.objects.filter(action=AuditEvent.Action.ALLOWLIST_CHANGED).latest("created_at", "id").created_at


def synced(*, inputs_at, left_out=None, last_error="") -> FirewallState:
    """A successful sync that read the database at `inputs_at` and finished a second later."""
    # Changes made before (set_networks) made the zone's row already: they mark it as waiting for a sync.
    return FirewallState.objects.update_or_create(
        zone_id=ZONE,
        defaults={
            "synced_inputs_at": inputs_at,
            "last_synced_at": inputs_at + timedelta(seconds=1),
            "left_out": left_out or {},
            "last_error": last_error,
        },
    )[0]


def networks_page(user) -> str:
    client = Client()
    client.force_login(user)
    return client.get(reverse("certificates:allowlist")).content.decode()


def api(user, method: str, body: dict | None = None) -> dict:
    secret = services.api_token_create(user=user, name="t", origin=services.Origin(actor=user))[1]
    headers = {"Authorization": f"Bearer {secret}"}
    if method == "GET":
        return Client().get("/api/v1/allowlist", headers=headers).json()
    return (
        Client()
        .put("/api/v1/allowlist", data=json.dumps(body), content_type="application/json", headers=headers)
        .json()
    )


# -- each user: applied, waiting, not applied ---------------------------------------------------------------------


def test_it_waits_when_no_sync_has_run(alice):
    set_networks(alice, ["93.184.216.0/24"])

    status = allowlist_status(user=alice, zone_id=ZONE)

    assert (status.status, status.applied_at, status.reason) == ("waiting", None, "no firewall sync has run yet")
    assert "waiting for the next firewall sync (no firewall sync has run yet)." in networks_page(alice)


def test_a_change_the_last_sync_read_is_applied_at_that_sync(alice):
    changed_at = set_networks(alice, ["93.184.216.0/24"])
    state = synced(inputs_at=changed_at)  # read at the same instant: "at or before" counts

    status = allowlist_status(user=alice, zone_id=ZONE)

    assert (status.status, status.applied_at, status.reason) == ("applied", state.last_synced_at, "")
    assert f'<strong>In force</strong> since <time datetime="{state.last_synced_at.isoformat()}' in networks_page(alice)


def test_a_change_after_the_last_sync_read_the_database_waits(alice):
    changed_at = set_networks(alice, ["93.184.216.0/24"])
    synced(inputs_at=changed_at - timedelta(microseconds=1))

    status = allowlist_status(user=alice, zone_id=ZONE)

    assert status.status == "waiting"
    assert status.reason == "the firewall sync has not run since your last change"
    assert 'data-status="waiting"' in networks_page(alice)


def test_a_user_the_sync_left_out_is_told_why(alice, bob):
    changed_at = set_networks(alice, ["93.184.216.0/24"])
    set_networks(bob, ["8.8.8.0/24"])
    synced(
        inputs_at=changed_at + timedelta(seconds=5),
        left_out={"user_ids": [alice.pk], "allow_ranges": 0, "reason": "The zone's 5 custom rules are all in use."},
    )

    mine = allowlist_status(user=alice, zone_id=ZONE)
    theirs = allowlist_status(user=bob, zone_id=ZONE)

    assert (mine.status, mine.applied_at) == ("not_applied", None)
    assert mine.reason == "The zone's 5 custom rules are all in use"
    assert "<strong>Not enforced:</strong> the zone's firewall rules are full" in networks_page(alice)
    assert theirs.status == "applied", "only the users named in left_out are affected"


def test_an_empty_allowlist_is_applied_once_a_sync_has_removed_the_rule(alice):
    set_networks(alice, ["93.184.216.0/24"])
    emptied_at = set_networks(alice, [])
    synced(inputs_at=emptied_at - timedelta(seconds=1))

    assert allowlist_status(user=alice, zone_id=ZONE).status == "waiting"

    FirewallState.objects.filter(zone_id=ZONE).update(synced_inputs_at=emptied_at)
    assert allowlist_status(user=alice, zone_id=ZONE).status == "applied"


def test_a_user_who_never_set_networks_is_applied_after_any_sync(alice, bob):
    changed_at = set_networks(bob, ["93.184.216.0/24"])
    synced(inputs_at=changed_at - timedelta(seconds=1))

    assert allowlist_status(user=alice, zone_id=ZONE).status == "applied"
    assert allowlist_status(user=bob, zone_id=ZONE).status == "waiting", "bob's change is newer than the sync"


def test_a_failed_sync_is_said_without_its_internal_error(alice):
    changed_at = set_networks(alice, ["93.184.216.0/24"])
    synced(inputs_at=changed_at - timedelta(seconds=1), last_error=INTERNAL_ERROR)

    status = allowlist_status(user=alice, zone_id=ZONE)

    assert (status.status, status.reason) == ("waiting", SYNC_FAILED)
    page = networks_page(alice)
    assert "the last firewall sync failed" in page
    assert "10000" not in page
    assert "zone.waf" not in page
    assert "zone.waf" not in json.dumps(api(alice, "GET"))


def test_a_failed_first_sync_is_said_too(alice):
    set_networks(alice, ["93.184.216.0/24"])
    FirewallState.objects.filter(zone_id=ZONE).update(last_error=INTERNAL_ERROR)

    assert allowlist_status(user=alice, zone_id=ZONE).reason == SYNC_FAILED


def test_a_failure_after_a_sync_that_pushed_the_change_keeps_it_applied(alice):
    # A failed sync writes nothing it has not finished; the rules the last good one pushed stay in force.
    changed_at = set_networks(alice, ["93.184.216.0/24"])
    synced(inputs_at=changed_at, last_error=INTERNAL_ERROR)

    assert allowlist_status(user=alice, zone_id=ZONE).status == "applied"


def test_the_api_answers_the_status_with_the_networks(alice):
    changed_at = set_networks(alice, ["93.184.216.0/24"])
    state = synced(inputs_at=changed_at)

    got = api(alice, "GET")
    assert got["networks"] == ["93.184.216.0/24"]
    assert (got["status"], got["reason"]) == ("applied", "")
    applied_at = datetime.fromisoformat(got["applied_at"].replace("Z", "+00:00"))
    assert abs(applied_at - state.last_synced_at) < timedelta(milliseconds=1)  # JSON keeps milliseconds

    put = api(alice, "PUT", {"networks": ["8.8.8.0/24"]})
    assert (put["status"], put["applied_at"]) == ("waiting", None), "the new list waits for the next sync"


# -- staff: the firewall page and the admin index ------------------------------------------------------------------


@pytest.fixture
def left_out(emulator, settings, alice, bob):
    settings.PORTAL_API_HOSTNAMES = ["api.example.com"]
    return synced(
        inputs_at=set_networks(alice, ["93.184.216.0/24"]),
        left_out={"user_ids": [alice.pk, bob.pk], "allow_ranges": 3, "reason": "the zone's 5 custom rules are in use"},
    )


def test_the_firewall_page_lists_what_the_sync_left_out(left_out, alice, bob, charlie):
    page = signed_in(charlie).get(reverse("certificates:firewall")).content.decode()

    assert 'data-testid="left-out"' in page
    assert "the zone&#x27;s 5 custom rules are in use" in page
    for user in (alice, bob):
        link = reverse("admin:auth_user_change", args=[user.pk])
        assert f'<a href="{link}">{user.email}</a>' in page
    assert "3 allow ranges not pushed" in page


def test_the_firewall_page_shows_the_last_error(emulator, settings, charlie):
    settings.PORTAL_API_HOSTNAMES = ["api.example.com"]
    FirewallState.objects.create(zone_id=ZONE, last_error=INTERNAL_ERROR)

    page = signed_in(charlie).get(reverse("certificates:firewall")).content.decode()

    assert "The latest sync failed" in page
    assert "zone.waf" in page
    assert 'data-testid="left-out"' not in page


def test_the_firewall_page_names_another_teams_rule_above_the_portals(emulator, settings, alice, charlie):
    from certificates.cloudflare_client import get_cloudflare_client
    from certificates.firewall.sync import firewall_sync
    from cloudflare.client import before
    from cloudflare.models import RuleSpec
    from tests.firewall.test_edge_enforcement import issue
    from tests.support.rules import MONITORING_SKIP

    settings.PORTAL_API_HOSTNAMES = ["api.example.com"]
    settings.CLOUDFLARE_CUSTOM_RULES_LIMIT = 20
    issue(alice)
    firewall_sync(zone_id=ZONE)
    client = get_cloudflare_client()
    entrypoint = client.get_entrypoint(ZONE)
    client.add_rule(ZONE, entrypoint.id, MONITORING_SKIP, position=before(""))
    client.add_rule(ZONE, entrypoint.id, RuleSpec(ref="below", expression="ip.src in {192.0.2.1}"))
    staff = signed_in(charlie)

    page = staff.get(reverse("certificates:firewall")).content.decode()

    assert 'data-testid="foreign-above"' in page
    assert "<code>ops_monitoring_skip</code>: skip, skips the remaining rules" in page
    assert "<code>below</code>" not in page.split('data-testid="foreign-above"')[1].split("</div>")[0]
    assert "2 to move up" in page
    firewall_sync(zone_id=ZONE)
    after = staff.get(reverse("certificates:firewall")).content.decode()
    assert 'data-testid="foreign-above"' not in after
    assert "2 moved back to the top" in after
    assert "found 1 rule of others above the portal's (<code>ops_monitoring_skip</code>)" in after


def test_the_admin_index_warns_when_the_sync_left_something_out(left_out, charlie):
    page = signed_in(charlie).get(reverse("admin:index")).content.decode()

    assert 'data-testid="firewall-warning"' in page
    assert "The last firewall sync left out 2 user(s)&#x27; networks and 3 allow range(s)" in page
    assert f'<a href="{reverse("certificates:firewall")}">' in page


def test_the_admin_index_warns_when_the_last_sync_failed(db, charlie):
    FirewallState.objects.create(zone_id=ZONE, last_error=INTERNAL_ERROR)

    page = signed_in(charlie).get(reverse("admin:index")).content.decode()

    assert "The last firewall sync failed" in page


def test_the_admin_index_is_quiet_when_everything_was_pushed(db, alice, charlie):
    synced(inputs_at=set_networks(alice, ["93.184.216.0/24"]))

    page = signed_in(charlie).get(reverse("admin:index")).content.decode()

    assert 'data-testid="firewall-warning"' not in page
    assert "Recent actions" in page, "the rest of Django's index is still there"


def test_a_new_certificate_is_shown_waiting_for_the_edge_until_a_sync_has_read_it(emulator, settings, alice):
    from certificates.firewall.sync import firewall_sync
    from tests.firewall.test_edge_enforcement import issue

    settings.PORTAL_API_HOSTNAMES = ["api.example.com"]
    settings.CLOUDFLARE_CUSTOM_RULES_LIMIT = 20
    firewall_sync(zone_id=ZONE)
    certificate = issue(alice)
    client = signed_in(alice)

    assert 'data-testid="edge-waiting"' in client.get(reverse("certificates:dashboard")).content.decode()
    assert (
        'data-testid="edge-waiting"'
        in client.get(reverse("certificates:detail", args=[certificate.pk])).content.decode()
    )
    FirewallState.objects.filter(zone_id=ZONE).update(synced_inputs_at=certificate.updated_at + timedelta(seconds=1))

    assert 'data-testid="edge-waiting"' not in client.get(reverse("certificates:dashboard")).content.decode()
