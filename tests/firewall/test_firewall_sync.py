"""Firewall sync against the emulator: minimal writes, ownership by ref prefix, serialization, convergence."""

from __future__ import annotations

import re
import threading
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from certificates import services
from certificates.cloudflare_client import get_cloudflare_client
from certificates.firewall import sync
from certificates.firewall.sync import FirewallSyncError, SyncBusy, firewall_preview, firewall_sync
from certificates.models import AllowlistEntry, FirewallState
from cloudflare.errors import AmbiguousRequestError
from cloudflare.models import RuleSpec
from tests.support.pki import policy_csr

ZONE = "0" * 32
FOREIGN = RuleSpec(ref="security_team_geo", expression='ip.src.country in {"KP"}', description="not ours")


@pytest.fixture(autouse=True)
def firewall_settings(settings):
    settings.PORTAL_API_HOSTNAMES = ["api.example.com"]
    settings.CLOUDFLARE_CUSTOM_RULES_LIMIT = 20


def issue(user, name="laptop"):
    return services.certificate_issue(
        user=user, csr=policy_csr(user), validity_days=365, name=name, origin=services.Origin(actor=user)
    )


def writes(emulator) -> list[tuple[str, str]]:
    return [(e.method, e.path) for e in emulator.request_log if e.method != "GET"]


def reads(emulator) -> list[str]:
    return [e.path for e in emulator.request_log if e.method == "GET"]


def portal_rules():
    entrypoint = get_cloudflare_client().get_entrypoint(ZONE)
    return {rule.ref: rule for rule in entrypoint.rules if rule.ref.startswith("mtls_portal_")}


def admitted() -> set[str]:
    """The fingerprints the zone's allow rules admit: on the API hostnames no other certificate passes."""
    allow_rules = [rule for ref, rule in portal_rules().items() if "_allow_" in ref]
    assert allow_rules
    return {fp for rule in allow_rules for fp in re.findall(r"[0-9a-f]{64}", rule.expression)}


def test_a_first_sync_creates_the_entrypoint_in_one_write(emulator, alice):
    certificate = issue(alice)
    AllowlistEntry.objects.create(owner=alice, network="93.184.216.0/24")
    emulator.request_log.clear()

    plan = firewall_sync(zone_id=ZONE)

    assert len(reads(emulator)) == 1
    assert writes(emulator) == [("POST", f"/zones/{ZONE}/rulesets")]
    rules = portal_rules()
    assert set(rules) == {rule.ref for rule in plan.add}
    assert "mtls_portal_base" in rules
    (binding,) = [rule for ref, rule in rules.items() if ref.startswith("mtls_portal_bind")]
    assert certificate.fingerprint_sha256 in binding.expression
    assert "93.184.216.0/24" in binding.expression
    state = FirewallState.objects.get(zone_id=ZONE)
    assert state.last_synced_at is not None
    assert state.ruleset_id


def test_a_sync_with_nothing_changed_is_one_read_and_no_write(emulator, alice):
    issue(alice)
    firewall_sync(zone_id=ZONE)
    emulator.request_log.clear()

    plan = firewall_sync(zone_id=ZONE)

    assert plan.is_empty
    assert len(reads(emulator)) == 1
    assert writes(emulator) == []


def test_one_users_allowlist_change_is_one_read_and_one_write(emulator, alice, bob):
    issue(alice)
    issue(bob)
    AllowlistEntry.objects.create(owner=alice, network="93.184.216.0/24")
    AllowlistEntry.objects.create(owner=bob, network="8.8.8.0/24")
    firewall_sync(zone_id=ZONE)
    emulator.request_log.clear()

    AllowlistEntry.objects.filter(owner=alice).update(network="93.184.0.0/16")
    firewall_sync(zone_id=ZONE)

    assert len(reads(emulator)) == 1
    assert len(writes(emulator)) == 1
    assert writes(emulator)[0][0] == "PATCH"


def test_a_revoked_certificate_leaves_the_allow_list(emulator, alice):
    certificate = issue(alice)
    kept = issue(alice, name="desktop")
    firewall_sync(zone_id=ZONE)
    assert admitted() == {certificate.fingerprint_sha256, kept.fingerprint_sha256}
    services.certificate_revoke(certificate=certificate, origin=services.Origin(actor=alice))

    firewall_sync(zone_id=ZONE)

    assert admitted() == {kept.fingerprint_sha256}


def test_a_deactivated_users_certificates_are_not_admitted(emulator, alice, bob):
    certificate = issue(alice)
    other = issue(bob)
    alice.is_active = False
    alice.save()

    firewall_sync(zone_id=ZONE)

    assert admitted() == {other.fingerprint_sha256}
    assert certificate.fingerprint_sha256 not in str(portal_rules())


def test_rules_without_the_prefix_are_never_touched(emulator, alice):
    client = get_cloudflare_client()
    ruleset = client.create_entrypoint(ZONE, rules=[FOREIGN])
    stale = RuleSpec(ref="mtls_portal_bind_9", expression='http.host eq "old.example.com"')
    client.add_rule(ZONE, ruleset.id, stale)
    issue(alice)

    firewall_sync(zone_id=ZONE)

    rules = {rule.ref: rule for rule in client.get_entrypoint(ZONE).rules}
    assert rules["security_team_geo"].expression == FOREIGN.expression
    assert rules["security_team_geo"].id == ruleset.rules[0].id
    assert "mtls_portal_bind_9" not in rules, "the portal's own stale rule is deleted"
    assert "mtls_portal_base" in rules


def test_dry_run_shows_the_plan_and_changes_nothing(emulator, alice):
    certificate = issue(alice)
    AllowlistEntry.objects.create(owner=alice, network="93.184.216.0/24")
    out = StringIO()

    call_command("sync_firewall", "--dry-run", stdout=out)

    assert "+ add mtls_portal_base" in out.getvalue()
    assert certificate.fingerprint_sha256 in out.getvalue()
    assert "93.184.216.0/24" in out.getvalue()
    assert "Dry run: nothing was changed." in out.getvalue()
    assert get_cloudflare_client().get_entrypoint(ZONE) is None


def test_the_preview_is_the_plan_read_with_the_web_client_and_writes_nothing(emulator, alice, monkeypatch):
    issue(alice)
    built: list[bool] = []
    monkeypatch.setattr(
        sync,
        "get_cloudflare_client",
        lambda **kwargs: built.append(kwargs["wait_for_budget"]) or get_cloudflare_client(),
    )
    emulator.request_log.clear()

    plan, error = firewall_preview(zone_id=ZONE)

    assert error is None
    assert "mtls_portal_base" in [rule.ref for rule in plan.add]
    assert built == [False], "a page reads with the web client (its deadline)"
    assert len(reads(emulator)) == 1
    assert writes(emulator) == []


def test_the_preview_reports_cloudflare_errors_and_refusals_instead_of_raising(emulator, alice, settings):
    emulator.faults.server_error(times=10, status=503, method="GET")

    plan, error = firewall_preview(zone_id=ZONE)

    assert plan is None
    assert error
    emulator.faults.clear()
    settings.PORTAL_API_HOSTNAMES = []
    assert firewall_preview(zone_id=ZONE) == (
        None,
        "PORTAL_API_HOSTNAMES is empty; refusing to remove the portal's rules.",
    )


def test_a_zone_with_no_room_even_for_the_base_rule_is_a_clear_error_and_nothing_changes(emulator, alice, settings):
    client = get_cloudflare_client()
    client.create_entrypoint(ZONE, rules=[FOREIGN])
    settings.CLOUDFLARE_CUSTOM_RULES_LIMIT = 1
    issue(alice)
    emulator.request_log.clear()

    with pytest.raises(FirewallSyncError, match="1 of them are not the portal's"):
        firewall_sync(zone_id=ZONE)

    assert writes(emulator) == []
    assert FirewallState.objects.get(zone_id=ZONE).last_error


def test_a_zone_without_room_for_everything_gets_the_safest_rules_and_says_what_it_left_out(
    emulator, alice, bob, settings
):
    settings.CLOUDFLARE_CUSTOM_RULES_LIMIT = 3
    get_cloudflare_client().create_entrypoint(ZONE, rules=[FOREIGN])
    mine = issue(alice)
    issue(bob)
    AllowlistEntry.objects.create(owner=alice, network="93.184.216.0/24")

    plan = firewall_sync(zone_id=ZONE)

    assert sorted(portal_rules()) == ["mtls_portal_allow_0", "mtls_portal_base"]
    assert mine.fingerprint_sha256 in admitted()
    state = FirewallState.objects.get(zone_id=ZONE)
    assert state.left_out["user_ids"] == [alice.pk]
    assert "leaves room for 2 of the 3 rules" in state.left_out["reason"]
    assert plan.left_out.user_ids == (alice.pk,)
    assert state.last_error == ""


def test_sync_converges_through_429_and_5xx(emulator, alice, bob):
    issue(alice)
    issue(bob)
    AllowlistEntry.objects.create(owner=alice, network="93.184.216.0/24")
    emulator.faults.rate_limit(times=1, retry_after=1)
    emulator.faults.server_error(times=2, status=503, method="GET")
    firewall_sync(zone_id=ZONE)
    emulator.faults.server_error(times=1, status=502, html=True, method="PATCH")
    AllowlistEntry.objects.filter(owner=alice).update(network="93.184.0.0/16")

    firewall_sync(zone_id=ZONE)

    emulator.faults.clear()
    assert firewall_sync(zone_id=ZONE).is_empty
    assert any("93.184.0.0/16" in rule.expression for rule in portal_rules().values())


@pytest.mark.django_db(transaction=True)
def test_two_workers_syncing_at_once_leave_no_duplicate_rules(emulator, alice, bob):
    from django.db import connection

    if connection.vendor == "sqlite":
        # SQLite's in-memory test database locks whole tables across threads; CI runs this on PostgreSQL.
        pytest.skip("needs a database with row-level locking (DATABASE_URL=postgres://...)")
    issue(alice)
    issue(bob)
    AllowlistEntry.objects.create(owner=alice, network="93.184.216.0/24")
    outcomes: list[str] = []

    def worker() -> None:
        try:
            firewall_sync(zone_id=ZONE)
            outcomes.append("synced")
        except SyncBusy:
            outcomes.append("busy")
        finally:
            from django.db import connection

            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    refs = [rule.ref for rule in get_cloudflare_client().get_entrypoint(ZONE).rules]
    assert len(refs) == len(set(refs))
    assert "synced" in outcomes
    assert firewall_sync(zone_id=ZONE).is_empty


def test_sync_converges_through_timeouts_without_duplicating_a_rule(emulator, alice, bob, settings):
    settings.CLOUDFLARE_TIMEOUT = 1
    client = get_cloudflare_client()
    client.create_entrypoint(ZONE, rules=[FOREIGN])
    issue(alice)
    AllowlistEntry.objects.create(owner=alice, network="93.184.216.0/24")
    # The first rule added is stored, then its answer is lost: a POST is not repeated blindly.
    emulator.faults.latency(5, method="POST", path="rules")

    with pytest.raises(AmbiguousRequestError):
        firewall_sync(zone_id=ZONE)
    firewall_sync(zone_id=ZONE)  # the next sync sees the stored rule by its ref and adds only the rest
    # An update whose answer is lost is simply repeated (PATCH is safe to repeat).
    AllowlistEntry.objects.filter(owner=alice).update(network="93.184.0.0/16")
    emulator.faults.latency(5, method="PATCH")
    firewall_sync(zone_id=ZONE)

    assert emulator.faults.pending() == []
    refs = [rule.ref for rule in client.get_entrypoint(ZONE).rules]
    assert len(refs) == len(set(refs))
    assert firewall_sync(zone_id=ZONE).is_empty
    assert any("93.184.0.0/16" in rule.expression for rule in portal_rules().values())


def test_no_hostnames_never_removes_the_portals_rules(emulator, alice, settings):
    issue(alice)
    firewall_sync(zone_id=ZONE)
    settings.PORTAL_API_HOSTNAMES = []
    emulator.request_log.clear()

    with pytest.raises(FirewallSyncError, match="PORTAL_API_HOSTNAMES is empty"):
        firewall_sync(zone_id=ZONE)

    assert writes(emulator) == []
    assert "mtls_portal_base" in portal_rules()


def test_a_sync_that_lost_its_lease_stops_before_writing(emulator, alice, monkeypatch):
    from certificates.firewall import sync

    issue(alice)
    AllowlistEntry.objects.create(owner=alice, network="93.184.216.0/24")
    get_cloudflare_client().create_entrypoint(ZONE, rules=[FOREIGN])
    real_plan = sync.firewall_plan

    def plan_then_lose_lease(**kwargs):
        result = real_plan(**kwargs)
        # Planning outlasted the lease, and another sync took it over.
        later = timezone.now() + sync.LEASE + timedelta(seconds=1)
        monkeypatch.setattr(timezone, "now", lambda: later)
        FirewallState.objects.filter(zone_id=ZONE).update(lease_owner="someone-else")
        return result

    monkeypatch.setattr(sync, "firewall_plan", plan_then_lose_lease)
    emulator.request_log.clear()

    with pytest.raises(SyncBusy, match="lost its lease"):
        firewall_sync(zone_id=ZONE)
    assert writes(emulator) == []


def test_one_users_unusable_allowlist_does_not_stop_the_zones_rules(emulator, alice, bob):
    mine = issue(alice)
    revoked = issue(bob)
    services.certificate_revoke(certificate=revoked, origin=services.Origin(actor=bob))
    AllowlistEntry.objects.create(owner=alice, network="fe80::1%eth0/128")  # written before validation existed

    firewall_sync(zone_id=ZONE)

    rules = portal_rules()
    assert revoked.fingerprint_sha256 not in admitted()
    assert mine.fingerprint_sha256 in admitted()
    # Fails closed for that user: their certificate is blocked from every address.
    binding = next(rule for ref, rule in rules.items() if "bind" in ref)
    assert mine.fingerprint_sha256 in binding.expression
    assert "ip.src" not in binding.expression


def test_dry_run_names_what_it_would_move_and_leave_out(emulator, alice, settings):
    from cloudflare.client import before
    from tests.support.rules import MONITORING_SKIP

    issue(alice)
    AllowlistEntry.objects.create(owner=alice, network="93.184.216.0/24")
    firewall_sync(zone_id=ZONE)
    entrypoint = get_cloudflare_client().get_entrypoint(ZONE)
    get_cloudflare_client().add_rule(ZONE, entrypoint.id, MONITORING_SKIP, position=before(""))
    settings.CLOUDFLARE_CUSTOM_RULES_LIMIT = 3
    out = StringIO()

    call_command("sync_firewall", "--dry-run", stdout=out)

    text = out.getvalue()
    assert "! ops_monitoring_skip (skip, skips the remaining rules) is not the portal's and sits above" in text
    assert f"! left out: 0 allow range(s), the allowlists of user(s) {alice.pk}:" in text
    assert "- delete mtls_portal_bind_1" in text
