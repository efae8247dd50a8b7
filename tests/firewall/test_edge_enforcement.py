"""Issue 8's promise on a real zone: the portal against the Cloudflare emulator running as its own process, over
real HTTP, with the edge's decision for a request asked from the emulator (rules in order, `skip` included).

"Only your certificate, only from your networks, and a revoked one stops working", whatever else the zone holds:
another team's skip rule above the portal's, a certificate made in the dashboard or for another account, a Free
plan at its rule limit.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from io import StringIO

import pytest
import requests
from django.core.management import CommandError, call_command
from django.utils import timezone

from certificates import cloudflare_client, services
from certificates.firewall.sync import firewall_sync
from certificates.models import AllowlistEntry, Certificate, UnknownCertificate
from certificates.services.lifecycle import zone_reconcile
from cloudflare.budget import LocalBudget
from cloudflare.client import before
from cloudflare.models import RuleSpec
from tests.support.emulator_process import running_emulator
from tests.support.pki import policy_csr
from tests.support.rules import MONITORING_SKIP

pytestmark = pytest.mark.slow

ZONE = "023e105f4ecef8ad9ca31a8372d0c353"
TOKEN = "edge-test-token"
API = "api.example.com"


SKIP = MONITORING_SKIP
GEO = RuleSpec(ref="security_team_blocklist", expression="ip.src in {192.0.2.250}", description="not ours")


@dataclass
class Zone:
    """The emulator process: Cloudflare's API for the portal, and what the edge would decide for a request."""

    root: str
    session: requests.Session

    def decide(self, *, ip: str, certificate: str | None = None, host: str = API) -> dict:
        body = {"host": host, "ip": ip, "certificate": certificate}
        answer = self.session.post(f"{self.root}/__emulator__/zones/{ZONE}/evaluate", json=body, timeout=10)
        assert answer.status_code == 200, answer.text
        return answer.json()["result"]

    def blocked_by(self, **request: str | None) -> str | None:
        verdict = self.decide(**request)  # type: ignore[arg-type]
        return verdict["rule"]["ref"] if verdict["outcome"] == "blocked" else None

    def calls(self, since: int = 0) -> list[dict]:
        """The API calls the emulator served, from the `since`-th on."""
        return self.session.get(f"{self.root}/__emulator__/log", timeout=10).json()["result"][since:]

    def make(self, kind: str) -> dict:
        path = f"zones/{ZONE}/dashboard_certificates" if kind == "dashboard" else "foreign_certificates"
        answer = self.session.post(f"{self.root}/__emulator__/{path}", json={}, timeout=30)
        assert answer.status_code == 200, answer.text
        return answer.json()["result"]


def zone_with_limit(settings, monkeypatch, limit: int) -> Iterator[Zone]:
    with running_emulator("--token", TOKEN, "--custom-rules-limit", str(limit), "--revocation-delay", "0") as url:
        settings.CLOUDFLARE_EMULATED = False
        settings.CLOUDFLARE_API_BASE_URL = url
        settings.CLOUDFLARE_API_TOKEN = TOKEN
        settings.CLOUDFLARE_ZONE_ID = ZONE
        settings.CLOUDFLARE_CUSTOM_RULES_LIMIT = limit
        settings.PORTAL_API_HOSTNAMES = [API]
        settings.CLOUDFLARE_RETRY_BASE_DELAY = 0.01
        monkeypatch.setattr(cloudflare_client, "get_call_budget", lambda: LocalBudget())
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {TOKEN}"
        yield Zone(url.removesuffix("/client/v4"), session)


@pytest.fixture
def zone(settings, monkeypatch) -> Iterator[Zone]:
    yield from zone_with_limit(settings, monkeypatch, 20)


@pytest.fixture
def free_zone(settings, monkeypatch) -> Iterator[Zone]:
    yield from zone_with_limit(settings, monkeypatch, 5)


def issue(user, name: str = "laptop") -> Certificate:
    return services.certificate_issue(
        user=user, csr=policy_csr(user), validity_days=365, name=name, origin=services.Origin(actor=user)
    )


def client():
    return cloudflare_client.get_cloudflare_client()


def rules_in_zone() -> list:
    return list(client().get_entrypoint(ZONE).rules)


def refs_in_zone() -> list[str]:
    return [rule.ref for rule in rules_in_zone()]


# -- order ------------------------------------------------------------------------------------------------------


def test_an_operators_skip_rule_placed_first_before_the_first_sync_does_not_switch_mtls_off(zone, alice):
    operator_rules = client().create_entrypoint(ZONE, rules=[SKIP, GEO]).rules
    certificate = issue(alice)
    assert zone.blocked_by(ip="198.51.100.7") is None  # the hole: no certificate at all, and it passes
    mark = len(zone.calls())

    plan = firewall_sync(zone_id=ZONE)

    assert plan.mode == "rules"  # two new rules: two single-rule writes at the top
    assert len(zone.calls(since=mark)) == 3
    refs = refs_in_zone()
    assert refs[-2:] == ["ops_monitoring_skip", "security_team_blocklist"]  # the others', in their order, below
    assert all(ref.startswith("mtls_portal_") for ref in refs[:-2])
    kept = {rule.ref: rule for rule in rules_in_zone()}
    assert [kept[rule.ref].id for rule in operator_rules] == [rule.id for rule in operator_rules]
    assert kept["ops_monitoring_skip"].skips_remaining_rules
    assert zone.blocked_by(ip="198.51.100.7") == "mtls_portal_base"
    assert zone.blocked_by(ip="198.51.100.7", certificate=certificate.certificate_pem) is None
    assert zone.blocked_by(ip="198.51.100.7", host="www.example.com") is None  # other hostnames untouched
    for spelling in ("API.example.com", "api.example.com.", "api.example.com:8443", "api.example.com.:443"):
        assert zone.blocked_by(ip="198.51.100.7", host=spelling) == "mtls_portal_base", spelling


def test_a_skip_rule_put_above_the_portals_rules_later_is_named_and_moved_below_them(zone, alice):
    issue(alice)
    firewall_sync(zone_id=ZONE)
    entrypoint = client().get_entrypoint(ZONE)
    client().add_rule(ZONE, entrypoint.id, SKIP, position=before(""))
    assert zone.blocked_by(ip="198.51.100.7") is None
    out = StringIO()
    with pytest.raises(CommandError):
        call_command("check_cloudflare", stdout=out, stderr=out)
    assert "ops_monitoring_skip" in out.getvalue()
    mark = len(zone.calls())

    plan = firewall_sync(zone_id=ZONE)

    assert [rule.ref for rule in plan.foreign_above] == ["ops_monitoring_skip"]
    assert plan.as_dict()["foreign_above"][0]["action"] == "skip"
    writes = [call for call in zone.calls(since=mark) if call["method"] != "GET"]
    assert [call["method"] for call in writes] == ["PATCH", "PATCH"]  # two position-only moves
    assert refs_in_zone()[-1] == "ops_monitoring_skip"
    assert zone.blocked_by(ip="198.51.100.7") == "mtls_portal_base"
    assert firewall_sync(zone_id=ZONE).is_empty


# -- only the portal's certificates ------------------------------------------------------------------------------


def test_a_dashboard_made_certificate_is_blocked_until_an_admin_adopts_it(zone, alice, bob, charlie):
    issue(alice)
    made = zone.make("dashboard")
    zone_reconcile(zone_id=ZONE)
    unknown = UnknownCertificate.objects.get(cloudflare_id=made["id"])
    firewall_sync(zone_id=ZONE)
    assert zone.blocked_by(ip="192.0.2.10", certificate=made["certificate"]).startswith("mtls_portal_allow_")

    services.unknown_certificate_adopt(unknown=unknown, owner=bob, origin=services.Origin(actor=charlie))
    AllowlistEntry.objects.create(owner=bob, network="192.0.2.0/24")
    firewall_sync(zone_id=ZONE)

    assert zone.blocked_by(ip="192.0.2.10", certificate=made["certificate"]) is None
    assert zone.blocked_by(ip="203.0.113.10", certificate=made["certificate"]).startswith("mtls_portal_bind_")


def test_a_verified_certificate_the_portal_never_saw_is_blocked(zone, alice):
    mine = issue(alice)
    foreign = zone.make("foreign")  # same managed CA, another account: Cloudflare verifies it
    firewall_sync(zone_id=ZONE)

    assert zone.decide(ip="192.0.2.10", certificate=foreign["certificate"])["rule"]["ref"].startswith(
        "mtls_portal_allow_"
    )
    assert zone.blocked_by(ip="192.0.2.10", certificate=mine.certificate_pem) is None


def test_a_revoked_certificate_stops_working_before_cloudflare_finishes(zone, alice):
    certificate = issue(alice)
    firewall_sync(zone_id=ZONE)
    assert zone.blocked_by(ip="192.0.2.10", certificate=certificate.certificate_pem) is None

    services.certificate_revoke(certificate=certificate, origin=services.Origin(actor=alice))
    firewall_sync(zone_id=ZONE)

    assert zone.blocked_by(ip="192.0.2.10", certificate=certificate.certificate_pem) is not None


# -- the plan's rule limit --------------------------------------------------------------------------------------


def fake_certificates(owner, count: int) -> list[Certificate]:
    """Usable certificates as rows only: the sync reads the database, and each one needs a fingerprint."""
    expires = timezone.now() + timedelta(days=30)
    return Certificate.objects.bulk_create(
        Certificate(
            owner=owner,
            name=f"fleet-{n}",
            zone_id=ZONE,
            status=Certificate.Status.ACTIVE,
            cloudflare_id=secrets.token_hex(16),
            csr="",
            public_key_sha256=secrets.token_hex(32),
            key_type="ecdsa-p256",
            common_name="fleet",
            validity_days=30,
            fingerprint_sha256=secrets.token_hex(32),
            expires_on=expires,
        )
        for n in range(count)
    )


def test_a_free_zone_at_its_limit_takes_a_change_that_adds_one_rule_and_removes_another(free_zone, alice, bob):
    client().create_entrypoint(ZONE, rules=[SKIP, GEO])
    mine = issue(alice)
    AllowlistEntry.objects.create(owner=alice, network="192.0.2.0/24")
    fake_certificates(bob, 30)
    firewall_sync(zone_id=ZONE)
    assert len(refs_in_zone()) == 5  # base, allow_0, bind_1 and the two others: the Free plan's limit
    mark = len(free_zone.calls())

    AllowlistEntry.objects.filter(owner=alice).delete()  # bind_1 goes
    fake_certificates(bob, 40)  # 71 certificates: the allow range splits in two, one rule more
    plan = firewall_sync(zone_id=ZONE)

    assert {call["status"] for call in free_zone.calls(since=mark)} == {200}  # never refused
    refs = refs_in_zone()
    assert len(refs) == 5
    assert sorted(ref for ref in refs if "_allow_" in ref) == sorted(rule.ref for rule in plan.desired[1:3])
    assert not plan.left_out
    assert free_zone.blocked_by(ip="203.0.113.10", certificate=mine.certificate_pem) is None
    assert free_zone.blocked_by(ip="198.51.100.7") == "mtls_portal_base"


def test_a_free_zone_too_full_for_every_rule_gets_the_safest_ones_and_says_so(free_zone, alice, bob):
    client().create_entrypoint(ZONE, rules=[SKIP, GEO, RuleSpec(ref="third_team", expression='http.host eq "x"')])
    mine = issue(alice)
    AllowlistEntry.objects.create(owner=alice, network="192.0.2.0/24")

    plan = firewall_sync(zone_id=ZONE)

    assert [ref for ref in refs_in_zone() if ref.startswith("mtls_portal_")] == [
        "mtls_portal_base",
        "mtls_portal_allow_0",
    ]
    assert plan.left_out.user_ids == (alice.pk,)
    # What is in force: mTLS, and only the portal's certificates; alice's networks are not (she is told).
    assert free_zone.blocked_by(ip="198.51.100.7") == "mtls_portal_base"
    assert free_zone.blocked_by(ip="203.0.113.10", certificate=mine.certificate_pem) is None
    assert free_zone.blocked_by(ip="203.0.113.10", certificate=free_zone.make("foreign")["certificate"])
