"""The client against the in-process emulator: the paths the portal relies on, faults included."""

from __future__ import annotations

import pytest
import requests

from cloudflare import errors
from cloudflare.client import CloudflareClient, before
from cloudflare.models import CertificateStatus, RuleSpec
from cloudflare.retry import NO_RETRIES, RetryPolicy
from cloudflare_emulator import EdgeRequest, Emulator
from cloudflare_emulator.wsgi_transport import mount_wsgi_app
from tests.emulator.conftest import FakeClock
from tests.support.contract import ContractValidator, Exchange
from tests.support.pki import make_csr

ZONE = "7c5dae5552338874e5053f2534d2767a"
BASE = "http://emulator.test/client/v4"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def emulator(clock) -> Emulator:
    return Emulator(clock=clock, revocation_delay=30, reactivation_delay=30, zone_capacity=3)


@pytest.fixture
def client(emulator) -> CloudflareClient:
    session = requests.Session()
    mount_wsgi_app(session, BASE, emulator.wsgi_app)
    policy = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.01)
    return CloudflareClient(api_token="t", base_url=BASE, session=session, retry=policy, sleep=lambda _s: None)


def test_a_timed_out_create_leaves_a_certificate_that_listing_finds(client, emulator):
    csr = make_csr("ambiguous")
    emulator.faults.create_commits_then_fails(mode="timeout")

    with pytest.raises(errors.AmbiguousRequestError):
        client.create_client_certificate(ZONE, csr=csr, validity_days=30)

    matches = [c for c in client.iter_client_certificates(ZONE) if c.csr.strip() == csr.strip()]
    assert len(matches) == 1, "the create reached Cloudflare; reconciliation adopts it instead of issuing again"
    assert [entry.method for entry in emulator.request_log].count("POST") == 1


def test_a_create_answered_with_a_500_is_not_repeated(client, emulator):
    emulator.faults.create_commits_then_fails(mode="server_error")

    with pytest.raises(errors.AmbiguousRequestError):
        client.create_client_certificate(ZONE, csr=make_csr("five-hundred"), validity_days=30)

    assert len(list(client.iter_client_certificates(ZONE))) == 1


def test_reads_converge_through_injected_429_and_5xx(client, emulator):
    emulator.faults.rate_limit(times=1, retry_after=1, method="GET")
    emulator.faults.server_error(times=1, status=502, html=True, method="GET")

    assert client.get_entrypoint(ZONE) is None
    assert [entry.status for entry in emulator.request_log] == [429, 502, 404]


def test_the_zone_quota_becomes_a_quota_error_and_revoking_frees_a_slot(client):
    issued = [client.create_client_certificate(ZONE, csr=make_csr(f"q{n}"), validity_days=30) for n in range(3)]

    with pytest.raises(errors.QuotaExceededError):
        client.create_client_certificate(ZONE, csr=make_csr("one-too-many"), validity_days=30)
    client.revoke_client_certificate(ZONE, issued[0].id)

    assert client.create_client_certificate(ZONE, csr=make_csr("fits-again"), validity_days=30).status == "active"


def test_revocation_completes_asynchronously_and_shows_in_the_status_filter(client, clock):
    certificate = client.create_client_certificate(ZONE, csr=make_csr("async"), validity_days=30)
    client.revoke_client_certificate(ZONE, certificate.id)

    pending = list(client.iter_client_certificates(ZONE, status=CertificateStatus.PENDING_REVOCATION))
    clock.advance(31)
    revoked = list(client.iter_client_certificates(ZONE, status=CertificateStatus.REVOKED))

    assert [c.id for c in pending] == [certificate.id]
    assert [c.id for c in revoked] == [certificate.id]


# -- the entrypoint as issue 8 uses it, every exchange checked against the official schema -------------------

PORTAL_BASE = (
    '(http.host in {"api.example.com"} and (not cf.tls_client_auth.cert_verified or cf.tls_client_auth.cert_revoked))'
)
TEAM_SKIP = {
    "ref": "team_office",
    "action": "skip",
    "action_parameters": {"ruleset": "current"},
    "logging": {"enabled": True},
    "expression": "ip.src in {198.51.100.0/24}",
    "description": "another team's rule",
}


@pytest.fixture
def checked_client(emulator):
    """A client whose every exchange with the emulator is validated against the schema when the test ends."""
    session = requests.Session()
    mount_wsgi_app(session, BASE, emulator.wsgi_app)
    exchanges: list[requests.Response] = []
    session.hooks["response"].append(lambda response, *args, **kwargs: exchanges.append(response))
    yield CloudflareClient(api_token="t", base_url=BASE, session=session, retry=NO_RETRIES)
    validator = ContractValidator()
    for response in exchanges:
        request = response.request
        body = request.body.encode() if isinstance(request.body, str) else request.body
        validator.check(Exchange(request.method, request.url, body, response.status_code, response.content))
    assert len(validator.checked) == len(exchanges)


def office_request(emulator, certificate=None):
    return emulator.evaluate(ZONE, EdgeRequest(host="api.example.com", ip="198.51.100.7", certificate=certificate))


def put_by_hand(emulator, rules):
    """Another team edits the entrypoint in the dashboard (with fields the portal never writes)."""
    session = requests.Session()
    mount_wsgi_app(session, BASE, emulator.wsgi_app)
    url = f"{BASE}/zones/{ZONE}/rulesets/phases/http_request_firewall_custom/entrypoint"
    response = session.put(url, json={"rules": rules}, headers={"Authorization": "Bearer dashboard"})
    assert response.status_code == 200, response.text


def test_the_portal_takes_the_top_and_a_full_put_keeps_the_foreign_rule(checked_client, emulator):
    put_by_hand(emulator, [TEAM_SKIP])
    entrypoint = checked_client.get_entrypoint(ZONE)
    foreign = entrypoint.rules[0]
    assert office_request(emulator).outcome == "allowed"  # the skip is alone: nothing blocks

    base = RuleSpec(ref="mtls_portal_base", expression=PORTAL_BASE)
    after_add = checked_client.add_rule(ZONE, entrypoint.id, base, position=before(""))
    assert [r.ref for r in after_add.rules] == ["mtls_portal_base", "team_office"]
    assert office_request(emulator).rule.ref == "mtls_portal_base"  # first, so the skip cannot switch it off

    portal = after_add.rule_by_ref("mtls_portal_base")
    changed = RuleSpec(ref=portal.ref, expression=PORTAL_BASE, description="mTLS required", id=portal.id)
    replaced = checked_client.replace_entrypoint(ZONE, [changed, foreign])

    assert [(r.id, r.ref) for r in replaced.rules] == [(portal.id, portal.ref), (foreign.id, foreign.ref)]
    assert replaced.rules[1].raw == foreign.raw  # carried back unchanged: same version, parameters, logging
    assert replaced.rules[0].description == "mTLS required"


def test_move_rule_reorders_without_changing_the_rule(checked_client, emulator):
    ruleset = checked_client.create_entrypoint(
        ZONE,
        rules=[
            RuleSpec(ref="team_block", expression="ip.src in {203.0.113.0/24}"),
            RuleSpec(ref="mtls_portal_base", expression=PORTAL_BASE),
        ],
    )
    portal = ruleset.rule_by_ref("mtls_portal_base")

    moved = checked_client.move_rule(ZONE, ruleset.id, portal, before(""))

    assert [r.ref for r in moved.rules] == ["mtls_portal_base", "team_block"]
    assert moved.rules[0].raw == portal.raw  # same id, version and definition
    assert moved.version != ruleset.version


def test_the_rule_limit_is_a_rule_limit_error(clock):
    emulator = Emulator(clock=clock, custom_rules_limit=2)
    session = requests.Session()
    mount_wsgi_app(session, BASE, emulator.wsgi_app)
    client = CloudflareClient(api_token="t", base_url=BASE, session=session, retry=NO_RETRIES)
    specs = [RuleSpec(ref=f"r{n}", expression=f"ip.src eq 192.0.2.{n}") for n in range(3)]
    ruleset = client.create_entrypoint(ZONE, rules=specs[:2])

    with pytest.raises(errors.RuleLimitError, match="3 out of 2"):
        client.add_rule(ZONE, ruleset.id, specs[2])
    with pytest.raises(errors.RuleLimitError):
        client.replace_entrypoint(ZONE, specs)
    assert client.get_entrypoint(ZONE) == ruleset
