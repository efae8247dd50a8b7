"""The zone's edge: custom rules evaluated in order with skip, the cf.tls_client_auth fields from the presented
certificate, and certificates made outside the portal (the dashboard, another account of the shared CA)."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cloudflare_emulator import ApiError, EdgeRequest, Emulator

from .conftest import ZONE, Api, FakeClock, error_code, issue, make_api, make_csr

RULESETS = f"/zones/{ZONE}/rulesets"
ENTRYPOINT = f"{RULESETS}/phases/http_request_firewall_custom/entrypoint"
EVALUATE = f"/__emulator__/zones/{ZONE}/evaluate"
HOST = "api.example.com"
NOT_VERIFIED = {
    "ref": "base",
    "action": "block",
    "expression": f'(http.host in {{"{HOST}"}} and (not cf.tls_client_auth.cert_verified '
    "or cf.tls_client_auth.cert_revoked))",
}
SKIP_OFFICE = {
    "ref": "office",
    "action": "skip",
    "action_parameters": {"ruleset": "current"},
    "expression": "ip.src in {198.51.100.0/24}",
}


def put_rules(api: Api, *rules: dict[str, Any]) -> dict[str, Any]:
    response = api.put(ENTRYPOINT, {"rules": list(rules)})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()["result"]
    return result


def verdict(emulator: Emulator, *, ip: str = "192.0.2.1", certificate: str | None = None, host: str = HOST) -> Any:
    return emulator.evaluate(ZONE, EdgeRequest(host=host, ip=ip, certificate=certificate))


def outcome(emulator: Emulator, **kwargs: Any) -> tuple[str, str | None]:
    result = verdict(emulator, **kwargs)
    return result.outcome, (result.rule.ref if result.rule else None)


def self_signed() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Cloudflare Managed CA (emulated)")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


# --- order and actions ---------------------------------------------------------------------------------


def test_it_allows_a_request_no_rule_matches(emulator: Emulator, api: Api) -> None:
    assert outcome(emulator) == ("allowed", None)  # no entrypoint at all
    put_rules(api, NOT_VERIFIED)

    assert outcome(emulator, certificate=issue(api, make_csr())["certificate"]) == ("allowed", None)
    assert outcome(emulator, host="other.example.com") == ("allowed", None)


def test_the_first_matching_block_ends_evaluation(emulator: Emulator, api: Api) -> None:
    ruleset = put_rules(api, NOT_VERIFIED, {**SKIP_OFFICE, "ref": "skip_after"})

    result = verdict(emulator, ip="198.51.100.7")

    assert result.blocked
    assert result.rule is not None
    assert (result.rule.id, result.rule.ref, result.rule.action) == (ruleset["rules"][0]["id"], "base", "block")


def test_a_skip_rule_above_the_block_switches_it_off_for_the_traffic_it_matches(emulator: Emulator, api: Api) -> None:
    put_rules(api, SKIP_OFFICE, NOT_VERIFIED)

    assert outcome(emulator, ip="198.51.100.7") == ("allowed", "office")
    assert outcome(emulator, ip="192.0.2.1") == ("blocked", "base")


def test_disabled_rules_and_log_rules_do_not_end_evaluation(emulator: Emulator, api: Api) -> None:
    log_all = {"ref": "log_all", "action": "log", "expression": f'http.host eq "{HOST}"'}
    put_rules(api, {**SKIP_OFFICE, "enabled": False}, log_all, NOT_VERIFIED)

    assert outcome(emulator, ip="198.51.100.7") == ("blocked", "base")


def test_a_skip_of_other_phases_leaves_the_custom_rules_running(emulator: Emulator, api: Api) -> None:
    skip_phases = {**SKIP_OFFICE, "action_parameters": {"phases": ["http_ratelimit"]}}
    put_rules(api, skip_phases, NOT_VERIFIED)

    assert outcome(emulator, ip="198.51.100.7") == ("blocked", "base")


@pytest.mark.parametrize("action", ["managed_challenge", "js_challenge", "challenge"])
def test_challenges_stop_the_request_like_a_block(emulator: Emulator, api: Api, action: str) -> None:
    # Past the schema check: rulesets_RuleAction's pattern ^[a-z]+$ refuses the schema's own
    # "managed_challenge" and "js_challenge" (in requests and answers alike).
    body = {"rules": [{**NOT_VERIFIED, "action": action}]}
    assert api.session.put(api.base + ENTRYPOINT, json=body).status_code == 200

    result = verdict(emulator)

    assert result.outcome == "blocked"
    assert result.rule is not None
    assert result.rule.action == action


def test_an_executed_zone_custom_ruleset_blocks_and_its_skip_ends_only_itself(emulator: Emulator, api: Api) -> None:
    body = {
        "name": "team rules",
        "kind": "custom",
        "phase": "http_request_firewall_custom",
        "rules": [SKIP_OFFICE, {"ref": "team_block", "action": "block", "expression": "ip.src in {203.0.113.0/24}"}],
    }
    custom = api.post(RULESETS, body).json()["result"]
    execute = {"ref": "run_team", "action": "execute", "action_parameters": {"id": custom["id"]}}
    put_rules(api, {**execute, "expression": f'http.host eq "{HOST}"'}, NOT_VERIFIED)

    assert outcome(emulator, ip="203.0.113.5") == ("blocked", "team_block")
    assert outcome(emulator, ip="198.51.100.7") == ("blocked", "base")  # the skip ended the custom ruleset only


@pytest.mark.parametrize(
    "rule",
    [
        {"ref": "path", "action": "block", "expression": 'http.request.uri.path eq "/admin"'},
        {"ref": "rewrite", "action": "rewrite", "expression": "ip.src in {192.0.2.0/24}"},
    ],
)
def test_what_the_evaluator_cannot_read_fails_loudly(emulator: Emulator, api: Api, rule: dict[str, Any]) -> None:
    put_rules(api, rule)

    with pytest.raises(ApiError, match=f"rule {rule['ref']}"):
        verdict(emulator)
    response = api.post(EVALUATE, {"host": HOST, "ip": "192.0.2.1", "certificate": None})
    assert response.status_code == 400
    assert error_code(response) == 1701


# --- the cf.tls_client_auth fields ---------------------------------------------------------------------


def test_http_host_is_the_header_as_sent(emulator: Emulator, api: Api) -> None:
    put_rules(api, {"ref": "exact", "action": "block", "expression": f'http.host eq "{HOST}"'})
    assert outcome(emulator, host="API.example.com") == ("allowed", None)
    assert outcome(emulator, host=f"{HOST}:443") == ("allowed", None)

    put_rules(api, {"ref": "lowered", "action": "block", "expression": f'lower(http.host) eq "{HOST}"'})
    assert outcome(emulator, host="API.example.com") == ("blocked", "lowered")


def test_presented_and_fingerprint_come_from_the_certificate(emulator: Emulator, api: Api) -> None:
    certificate = issue(api, make_csr())
    pin = {
        "ref": "pin",
        "action": "block",
        "expression": f'cf.tls_client_auth.cert_fingerprint_sha256 eq "{certificate["fingerprint_sha256"]}"',
    }
    put_rules(api, {"ref": "none", "action": "block", "expression": "not cf.tls_client_auth.cert_presented"}, pin)

    assert outcome(emulator) == ("blocked", "none")
    assert outcome(emulator, certificate=certificate["certificate"]) == ("blocked", "pin")
    assert outcome(emulator, certificate=issue(api, make_csr("another"))["certificate"]) == ("allowed", None)


def test_a_certificate_of_another_ca_is_presented_but_not_verified(emulator: Emulator, api: Api) -> None:
    put_rules(
        api, NOT_VERIFIED, {"ref": "presented", "action": "block", "expression": "cf.tls_client_auth.cert_presented"}
    )

    assert outcome(emulator, certificate=self_signed()) == ("blocked", "base")


def test_an_expired_certificate_is_not_verified(emulator: Emulator, api: Api, clock: FakeClock) -> None:
    certificate = issue(api, make_csr(), validity_days=1)["certificate"]
    put_rules(api, NOT_VERIFIED)
    assert outcome(emulator, certificate=certificate) == ("allowed", None)

    clock.advance(2 * 86400)

    assert outcome(emulator, certificate=certificate) == ("blocked", "base")


def test_revoked_only_once_cloudflare_processed_the_revocation(emulator: Emulator, api: Api, clock: FakeClock) -> None:
    record = issue(api, make_csr())
    revoked_only = {"ref": "revoked", "action": "block", "expression": "cf.tls_client_auth.cert_revoked"}
    verified_and_revoked = "cf.tls_client_auth.cert_verified and cf.tls_client_auth.cert_revoked"
    put_rules(api, {**revoked_only, "expression": verified_and_revoked})
    api.delete(f"/zones/{ZONE}/client_certificates/{record['id']}")

    # pending_revocation: Cloudflare still accepts it (the portal's own rules cover this window)
    assert outcome(emulator, certificate=record["certificate"]) == ("allowed", None)
    clock.advance(30)
    # revoked, and revoked implies verified (FACTS.md §6)
    assert outcome(emulator, certificate=record["certificate"]) == ("blocked", "revoked")


def test_revocation_is_per_zone(emulator: Emulator, api: Api, clock: FakeClock) -> None:
    other_zone = "9f1839b6152d298aca64c4e906b6d074"
    record = issue(api, make_csr(), zone=other_zone)
    api.delete(f"/zones/{other_zone}/client_certificates/{record['id']}")
    clock.advance(30)
    put_rules(api, NOT_VERIFIED)

    # validation is account-level (FACTS.md §4): the certificate verifies here, and is not revoked here
    assert outcome(emulator, certificate=record["certificate"]) == ("allowed", None)


# --- the HTTP route --------------------------------------------------------------------------------------


def test_the_route_answers_the_verdict(api: Api) -> None:
    ruleset = put_rules(api, SKIP_OFFICE, NOT_VERIFIED)

    blocked = api.post(EVALUATE, {"host": HOST, "ip": "192.0.2.1", "certificate": None}).json()["result"]
    allowed = api.post(
        EVALUATE, {"host": HOST, "ip": "2001:db8::1", "certificate": issue(api, make_csr())["certificate"]}
    )

    base_id = ruleset["rules"][1]["id"]
    assert blocked == {"outcome": "blocked", "rule": {"id": base_id, "ref": "base", "action": "block"}}
    assert allowed.json()["result"] == {"outcome": "allowed", "rule": None}


@pytest.mark.parametrize(
    "body",
    [
        {"ip": "192.0.2.1"},
        {"host": HOST, "ip": "192.0.2.300"},
        {"host": HOST},
        {"host": HOST, "ip": "192.0.2.1", "certificate": "-----BEGIN CERTIFICATE-----\nnope\n"},
        {"host": HOST, "ip": "192.0.2.1", "certificate": 7},
    ],
)
def test_the_route_refuses_bad_requests(api: Api, body: dict[str, Any]) -> None:
    response = api.post(EVALUATE, body)

    assert response.status_code == 400
    assert error_code(response) == 1700


def test_the_routes_need_the_token(emulator: Emulator) -> None:
    wrong = make_api(emulator, token="wrong")
    for path in (EVALUATE, f"/__emulator__/zones/{ZONE}/dashboard_certificates", "/__emulator__/foreign_certificates"):
        response = wrong.post(path, {"host": HOST, "ip": "192.0.2.1"})
        assert response.status_code == 403
        assert error_code(response) == 9109
    assert emulator.request_log == []  # nothing was made, nothing reached the API


def test_an_invalid_zone_id_is_7003(api: Api) -> None:
    response = api.post("/__emulator__/zones/not-a-zone/evaluate", {"host": HOST, "ip": "192.0.2.1"})

    assert response.status_code == 404
    assert error_code(response) == 7003


# --- certificates made outside the portal ------------------------------------------------------------------


def public_key_of_private(pem: str) -> bytes:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def public_key_of_certificate(pem: str) -> bytes:
    certificate = x509.load_pem_x509_certificate(pem.encode())
    return certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_a_dashboard_certificate_is_listed_and_verified(emulator: Emulator, api: Api) -> None:
    made = api.post(f"/__emulator__/zones/{ZONE}/dashboard_certificates", {"common_name": "made-by-hand"})
    assert made.status_code == 200, made.text
    result = made.json()["result"]
    listed = api.get(f"/zones/{ZONE}/client_certificates").json()["result"]
    put_rules(api, NOT_VERIFIED)

    assert [item["id"] for item in listed] == [result["id"]]
    assert listed[0] == {key: value for key, value in result.items() if key != "private_key"}
    assert result["common_name"] == "made-by-hand"
    assert public_key_of_private(result["private_key"]) == public_key_of_certificate(result["certificate"])
    assert outcome(emulator, certificate=result["certificate"]) == ("allowed", None)


def test_a_dashboard_certificate_in_python_takes_a_slot_of_the_quota(clock: FakeClock) -> None:
    emulator = Emulator(clock=clock, zone_capacity=1)
    made = emulator.create_dashboard_certificate(ZONE, common_name="by-hand", validity_days=30, key_type="rsa")
    api = make_api(emulator)

    assert made["validity_days"] == 30
    assert "BEGIN PRIVATE KEY" in made["private_key"]
    assert api.post(f"/zones/{ZONE}/client_certificates", {"csr": make_csr(), "validity_days": 1}).status_code == 400
    with pytest.raises(ApiError, match="quota"):
        emulator.create_dashboard_certificate(ZONE)


def test_a_foreign_certificate_is_verified_but_in_no_zone(emulator: Emulator, api: Api) -> None:
    foreign = api.post("/__emulator__/foreign_certificates", {"common_name": "someone-else"}).json()["result"]
    python_made = emulator.create_foreign_certificate()
    put_rules(api, NOT_VERIFIED)

    assert api.get(f"/zones/{ZONE}/client_certificates").json()["result"] == []
    assert outcome(emulator, certificate=foreign["certificate"]) == ("allowed", None)
    assert outcome(emulator, certificate=python_made["certificate"]) == ("allowed", None)
    certificate = x509.load_pem_x509_certificate(foreign["certificate"].encode())
    assert foreign["fingerprint_sha256"] == certificate.fingerprint(hashes.SHA256()).hex()
    assert public_key_of_private(foreign["private_key"]) == public_key_of_certificate(foreign["certificate"])


@pytest.mark.parametrize(
    "body",
    [{"common_name": ""}, {"common_name": "x" * 65}, {"validity_days": 0}, {"validity_days": "9"}, {"key_type": "dsa"}],
)
def test_certificate_options_are_checked(api: Api, body: dict[str, Any]) -> None:
    for path in (f"/__emulator__/zones/{ZONE}/dashboard_certificates", "/__emulator__/foreign_certificates"):
        response = api.post(path, body)
        assert response.status_code == 400
        assert error_code(response) == 1700
    assert api.get(f"/zones/{ZONE}/client_certificates").json()["result"] == []
