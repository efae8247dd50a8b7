"""The scripted scenario of issue 2, over real HTTP against `python -m cloudflare_emulator`.

Twelve certificates, paged five at a time; revoke and reactivate; hostname associations; rules added,
updated and deleted; bad requests. Every request and response is checked against the official schema.
"""

from __future__ import annotations

import time

import pytest
import requests

from cloudflare import errors
from cloudflare.client import CloudflareClient, before
from cloudflare.models import CertificateStatus, RuleSpec
from cloudflare.retry import NO_RETRIES
from tests.support.contract import ContractValidator, Exchange
from tests.support.emulator_process import running_emulator
from tests.support.pki import make_csr

ZONE_ID = "5f3a0d1e2b4c6d8e0f1a2b3c4d5e6f70"
TOKEN = "scenario-token-0123456789"
BASE_RULE = (
    '(http.host in {"api.example.com"} and (not cf.tls_client_auth.cert_verified or cf.tls_client_auth.cert_revoked))'
)


@pytest.fixture(scope="module")
def emulator_url():
    with running_emulator("--token", TOKEN, "--revocation-delay", "1", "--reactivation-delay", "1") as url:
        yield url


@pytest.fixture
def recorded_session():
    session = requests.Session()
    exchanges: list[requests.Response] = []
    session.hooks["response"].append(lambda response, *args, **kwargs: exchanges.append(response))
    session.exchanges = exchanges
    return session


@pytest.fixture
def client(emulator_url, recorded_session):
    return CloudflareClient(api_token=TOKEN, base_url=emulator_url, session=recorded_session, retry=NO_RETRIES)


def check_all(session) -> int:
    validator = ContractValidator()
    for response in session.exchanges:
        request = response.request
        body = request.body.encode() if isinstance(request.body, str) else request.body
        validator.check(Exchange(request.method, request.url, body, response.status_code, response.content))
    return len(validator.checked)


def wait_for_status(client, certificate_id, status, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = client.get_client_certificate(ZONE_ID, certificate_id)
        if current.status == status:
            return current
        time.sleep(0.2)
    raise AssertionError(f"{certificate_id} never reached {status}")


@pytest.mark.slow
def test_scenario_against_the_emulator_process(client, recorded_session):
    issued = [
        client.create_client_certificate(ZONE_ID, csr=make_csr(f"scenario-{n}"), validity_days=30) for n in range(12)
    ]
    assert all(c.status is CertificateStatus.ACTIVE for c in issued)
    assert len({c.fingerprint_sha256 for c in issued}) == 12

    pages = [client.list_client_certificates_page(ZONE_ID, page=n, per_page=5) for n in (1, 2, 3)]
    assert [len(p.items) for p in pages] == [5, 5, 2]
    assert pages[0].info.total_count == 12
    assert {c.id for p in pages for c in p.items} == {c.id for c in issued}
    assert len(list(client.iter_client_certificates(ZONE_ID, per_page=5))) == 12

    first, second = issued[0], issued[1]
    assert client.revoke_client_certificate(ZONE_ID, first.id).status is CertificateStatus.PENDING_REVOCATION
    assert client.revoke_client_certificate(ZONE_ID, second.id).status is CertificateStatus.PENDING_REVOCATION
    pending = list(client.iter_client_certificates(ZONE_ID, status="pending_revocation", per_page=5))
    assert {c.id for c in pending} == {first.id, second.id}
    assert client.reactivate_client_certificate(ZONE_ID, second.id).status is CertificateStatus.PENDING_REACTIVATION
    wait_for_status(client, first.id, CertificateStatus.REVOKED)
    wait_for_status(client, second.id, CertificateStatus.ACTIVE)
    with pytest.raises(errors.BadRequestError):
        client.reactivate_client_certificate(ZONE_ID, first.id)  # only while pending_revocation

    client.put_hostname_associations(ZONE_ID, ["api.example.com", "api2.example.com"])
    assert client.get_hostname_associations(ZONE_ID).hostnames == ("api.example.com", "api2.example.com")
    client.put_hostname_associations(ZONE_ID, ["api.example.com"])
    assert client.get_hostname_associations(ZONE_ID).hostnames == ("api.example.com",)

    assert client.get_entrypoint(ZONE_ID) is None
    ruleset = client.create_entrypoint(
        ZONE_ID, rules=[RuleSpec(ref="other_team_rule", expression="ip.src eq 192.0.2.9")]
    )
    ruleset = client.add_rule(
        ZONE_ID, ruleset.id, RuleSpec(ref="mtls_portal_base", expression=BASE_RULE), position=before("")
    )
    assert [r.ref for r in ruleset.rules] == ["mtls_portal_base", "other_team_rule"]
    deny = f'cf.tls_client_auth.cert_fingerprint_sha256 in {{"{first.fingerprint_sha256}"}}'
    ruleset = client.add_rule(ZONE_ID, ruleset.id, RuleSpec(ref="mtls_portal_deny_1", expression=deny))
    deny_rule = ruleset.rule_by_ref("mtls_portal_deny_1")
    updated_expression = (
        f'cf.tls_client_auth.cert_fingerprint_sha256 in {{"{first.fingerprint_sha256}" "{second.fingerprint_sha256}"}}'
    )
    ruleset = client.update_rule(
        ZONE_ID, ruleset.id, deny_rule.id, RuleSpec(ref="mtls_portal_deny_1", expression=updated_expression)
    )
    assert ruleset.rule_by_ref("mtls_portal_deny_1").expression == updated_expression
    assert ruleset.rule_by_ref("mtls_portal_deny_1").id == deny_rule.id
    ruleset = client.delete_rule(ZONE_ID, ruleset.id, deny_rule.id)
    assert [r.ref for r in ruleset.rules] == ["mtls_portal_base", "other_team_rule"]
    with pytest.raises(errors.BadRequestError):
        client.add_rule(ZONE_ID, ruleset.id, RuleSpec(ref="other_team_rule", expression="ip.src eq 192.0.2.1"))

    assert check_all(recorded_session) == len(recorded_session.exchanges) > 40


@pytest.mark.slow
def test_bad_requests_get_cloudflare_error_envelopes(emulator_url, recorded_session):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    base = f"{emulator_url}/zones/{ZONE_ID}"
    answers = [
        recorded_session.post(f"{base}/client_certificates", data="{not json", headers=auth, timeout=5),
        recorded_session.post(
            f"{base}/client_certificates", json={"csr": "nope", "validity_days": 30}, headers=auth, timeout=5
        ),
        recorded_session.post(f"{base}/client_certificates", json={"validity_days": 30}, headers=auth, timeout=5),
        recorded_session.get(f"{base}/client_certificates", params={"per_page": 51}, headers=auth, timeout=5),
        recorded_session.get(f"{base}/client_certificates", params={"status": "gone"}, headers=auth, timeout=5),
        recorded_session.get(f"{base}/client_certificates", headers={"Authorization": "Bearer wrong"}, timeout=5),
        recorded_session.get(f"{base}/client_certificates", timeout=5),
        recorded_session.get(f"{emulator_url}/zones/not-a-zone/client_certificates", headers=auth, timeout=5),
        recorded_session.post(
            f"{base}/firewall/rules",
            json=[{"filter": {"expression": "ip.src eq 192.0.2.1"}, "action": "block"}],
            headers=auth,
            timeout=5,
        ),
    ]

    for answer in answers:
        assert 400 <= answer.status_code < 500, answer.text
        body = answer.json()
        assert body["success"] is False
        assert body["errors"]
        assert body["errors"][0]["message"]
        assert "Traceback" not in answer.text
    assert answers[-1].json()["errors"][0]["code"] == 10020
    # The requests break the schema on purpose; the answers must still match it.
    validator = ContractValidator()
    for answer in answers:
        body = answer.request.body.encode() if isinstance(answer.request.body, str) else answer.request.body
        exchange = Exchange(answer.request.method, answer.request.url, body, answer.status_code, answer.content)
        validator.check(exchange, request_too=False)
