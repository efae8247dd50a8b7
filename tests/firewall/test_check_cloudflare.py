"""check_cloudflare: is mTLS enforced at the edge? Zone states are built with the client against the emulator."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from certificates.management.commands import check_cloudflare
from certificates.models import FirewallState
from cloudflare.client import before
from cloudflare.models import RuleSpec
from tests.support.rules import SkipRemaining

ZONE = "0" * 32
HOSTS = ["api.example.com", "api2.example.com"]
BASE = RuleSpec(
    ref="mtls_portal_base",
    description="mTLS portal: verified, unrevoked certificate",
    expression='(lower(http.host) in {"api.example.com" "api2.example.com"} and '
    "(not cf.tls_client_auth.cert_verified or cf.tls_client_auth.cert_revoked))",
)
PORTAL_BINDING = RuleSpec(
    ref="mtls_portal_bind_1",
    expression='(cf.tls_client_auth.cert_fingerprint_sha256 in {"' + "ab" * 32 + '"} and not ip.src in {192.0.2.0/24})',
)
FOREIGN_BLOCK = RuleSpec(ref="waf_team_bots", description="block bad bots", expression="(cf.client.bot)")
FOREIGN_SKIP = RuleSpec(
    ref="waf_team_partners", description="partners skip the rest", expression="(ip.src in {203.0.113.0/24})"
)


@pytest.fixture
def client(emulator, settings):
    from certificates.cloudflare_client import get_cloudflare_client

    settings.PORTAL_API_HOSTNAMES = HOSTS
    settings.PORTAL_RULE_REF_PREFIX = "mtls_portal_"
    settings.REDIS_URL = ""
    settings.CLOUDFLARE_CALL_BUDGET = 1000
    settings.CLOUDFLARE_CALL_BUDGET_WINDOW = 300.0
    cloudflare = get_cloudflare_client()
    cloudflare.put_hostname_associations(ZONE, HOSTS)
    return cloudflare


@pytest.fixture
def synced(db):
    now = timezone.now()
    return FirewallState.objects.create(zone_id=ZONE, last_synced_at=now, synced_inputs_at=now - timedelta(seconds=1))


def check() -> tuple[bool, list[str]]:
    """Runs the command; whether it passed, and its lines."""
    out = StringIO()
    try:
        call_command("check_cloudflare", stdout=out)
    except CommandError:
        return False, out.getvalue().splitlines()
    return True, out.getvalue().splitlines()


def failures(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("FAIL ")]


def test_a_good_zone_passes(client, synced):
    client.create_entrypoint(ZONE, rules=[BASE, PORTAL_BINDING, FOREIGN_BLOCK])

    passed, lines = check()

    assert passed, lines
    assert failures(lines) == []
    assert (
        "ok the base rule mtls_portal_base blocks requests without a valid certificate on every API hostname" in lines
    )
    assert "ok the portal's 2 rule(s) come first in the entrypoint" in lines
    assert "ok custom rules (Zone: Zone WAF Edit): readable" in lines
    assert not [line for line in lines if line.startswith("warn ")]


def test_it_passes_with_exit_status_zero_from_the_command_line(client, synced):
    client.create_entrypoint(ZONE, rules=[BASE])

    call_command("check_cloudflare", stdout=StringIO())  # raises CommandError (exit 1) on any FAIL


def test_a_zone_without_an_entrypoint_fails(client, synced):
    passed, lines = check()

    assert not passed
    assert failures(lines) == [
        "FAIL the zone has no custom-rules entrypoint (http_request_firewall_custom): no portal rule is in force; "
        "run python manage.py sync_firewall"
    ]


def test_a_missing_base_rule_fails(client, synced):
    client.create_entrypoint(ZONE, rules=[PORTAL_BINDING])

    passed, lines = check()

    assert not passed
    assert [line.split(":")[0] for line in failures(lines)] == ["FAIL the base rule mtls_portal_base is missing"]


def test_a_disabled_base_rule_fails(client, synced):
    client.create_entrypoint(ZONE, rules=[RuleSpec(ref=BASE.ref, expression=BASE.expression, enabled=False)])

    passed, lines = check()

    assert not passed
    assert failures(lines) == ["FAIL the base rule mtls_portal_base is disabled; run python manage.py sync_firewall"]


def test_a_base_rule_that_only_logs_fails(client, synced):
    client.create_entrypoint(ZONE, rules=[RuleSpec(ref=BASE.ref, expression=BASE.expression, action="log")])

    passed, lines = check()

    assert not passed
    assert "has action log, not block" in failures(lines)[0]


def test_a_base_rule_missing_a_hostname_fails_naming_it(client, synced):
    one_host = BASE.expression.replace(' "api2.example.com"', "")
    client.create_entrypoint(ZONE, rules=[RuleSpec(ref=BASE.ref, expression=one_host)])

    passed, lines = check()

    assert not passed
    assert failures(lines) == [
        "FAIL the base rule mtls_portal_base does not cover api2.example.com; run python manage.py sync_firewall"
    ]


def test_a_base_rule_that_does_not_test_revocation_fails(client, synced):
    unrevoked = '(lower(http.host) in {"api.example.com" "api2.example.com"} and not cf.tls_client_auth.cert_verified)'
    client.create_entrypoint(ZONE, rules=[RuleSpec(ref=BASE.ref, expression=unrevoked)])

    passed, lines = check()

    assert not passed
    assert "does not test cf.tls_client_auth.cert_revoked" in failures(lines)[0]


def test_a_foreign_rule_above_the_portals_fails_naming_it(client, synced):
    ruleset = client.create_entrypoint(ZONE, rules=[BASE, PORTAL_BINDING])
    client.add_rule(ZONE, ruleset.id, FOREIGN_BLOCK, position=before(""))

    passed, lines = check()

    assert not passed
    assert failures(lines) == [
        'FAIL rule "block bad bots" (ref waf_team_bots) (action block) sits above the portal\'s rules, which must '
        "come first; python manage.py sync_firewall moves them back on top"
    ]


def test_a_foreign_rule_between_the_portals_fails_too(client, synced):
    ruleset = client.create_entrypoint(ZONE, rules=[BASE, PORTAL_BINDING])
    client.add_rule(ZONE, ruleset.id, FOREIGN_BLOCK, position=before(ruleset.rule_by_ref(PORTAL_BINDING.ref).id))

    passed, lines = check()

    assert not passed
    assert "waf_team_bots" in failures(lines)[0]


def test_a_skip_rule_above_the_portals_fails_naming_it(client, synced):
    ruleset = client.create_entrypoint(ZONE, rules=[BASE])
    skip = RuleSpec(ref=FOREIGN_SKIP.ref, description=FOREIGN_SKIP.description, expression=FOREIGN_SKIP.expression)
    client.add_rule(ZONE, ruleset.id, _skipping(skip), position=before(""))

    passed, lines = check()

    assert not passed
    assert failures(lines) == [
        'FAIL skip rule "partners skip the rest" (ref waf_team_partners) sits above the portal\'s rules: the '
        "requests it matches skip the mTLS checks; move it below them or remove it"
    ]


def test_a_skip_rule_below_the_portals_is_harmless(client, synced):
    ruleset = client.create_entrypoint(ZONE, rules=[BASE])
    client.add_rule(ZONE, ruleset.id, _skipping(FOREIGN_SKIP))

    passed, lines = check()

    assert passed, lines


def test_a_real_token_without_redis_fails(client, synced, settings, monkeypatch):
    client.create_entrypoint(ZONE, rules=[BASE])
    # Pretend it is Cloudflare: the emulator still answers through the client built above.
    settings.CLOUDFLARE_EMULATED = False
    monkeypatch.setattr(check_cloudflare, "get_cloudflare_client", lambda: client)

    passed, lines = check()
    assert not passed
    assert [line[:40] for line in failures(lines)] == ["FAIL REDIS_URL is not set: each process "]

    settings.REDIS_URL = "redis://127.0.0.1:6379/12"
    passed, lines = check()
    assert passed, lines
    assert "ok the call budget is shared by every process through REDIS_URL" in lines


@pytest.mark.parametrize(
    ("budget", "window", "warned"),
    [(1000, 300.0, False), (1100, 300.0, False), (1101, 300.0, True), (600, 150.0, True), (1150, 600.0, True)],
)
def test_it_warns_when_the_budget_leaves_no_headroom(client, synced, settings, budget, window, warned):
    client.create_entrypoint(ZONE, rules=[BASE])
    settings.CLOUDFLARE_CALL_BUDGET = budget
    settings.CLOUDFLARE_CALL_BUDGET_WINDOW = window

    passed, lines = check()

    assert passed, "a warning is not a failure"
    assert any(line.startswith("warn the call budget allows") for line in lines) == warned


def test_it_warns_about_what_the_last_sync_left_out_or_a_failed_sync(client, synced):
    client.create_entrypoint(ZONE, rules=[BASE])
    synced.left_out = {"user_ids": [], "allow_ranges": 2, "reason": "the zone's 5 custom rules are in use"}
    synced.save()

    passed, lines = check()
    assert passed
    assert (
        "warn The last firewall sync left out 0 user(s)' networks and 2 allow range(s): "
        "the zone's 5 custom rules are in use; see /staff/firewall/"
    ) in lines

    FirewallState.objects.filter(pk=synced.pk).update(left_out={}, last_error="timeout")
    assert "warn The last firewall sync failed; see /staff/firewall/" in check()[1]


def _skipping(rule: RuleSpec) -> RuleSpec:
    """A `skip` rule that skips the rest of the custom rules (FACTS.md §14)."""
    return SkipRemaining(ref=rule.ref, expression=rule.expression, description=rule.description)
