"""The client against `responses`: typed results, errors, pagination and argument checks.

Every exchange here is validated against Cloudflare's official schema by the `cf_http` fixture.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import pytest
import responses

from cloudflare import errors
from cloudflare.budget import LocalBudget
from cloudflare.client import CloudflareClient, before
from cloudflare.models import CertificateStatus, RuleSpec
from cloudflare.retry import NO_RETRIES
from tests.cloudflare.fixtures import (
    CERT_ID,
    FINGERPRINT,
    MTLS_ID,
    RULE_ID,
    RULESET_ID,
    client_certificate,
    envelope,
    failure,
    page_info,
    rule,
    ruleset,
)
from tests.conftest import ACCOUNT_ID, BASE_URL, ZONE_ID

TOKEN = "cf-test-token-abcdef0123456789"
CSR = "-----BEGIN CERTIFICATE REQUEST-----\nMIIBfake\n-----END CERTIFICATE REQUEST-----\n"
CERTS_URL = f"{BASE_URL}/zones/{ZONE_ID}/client_certificates"
ENTRYPOINT_URL = f"{BASE_URL}/zones/{ZONE_ID}/rulesets/phases/http_request_firewall_custom/entrypoint"
RULES_URL = f"{BASE_URL}/zones/{ZONE_ID}/rulesets/{RULESET_ID}/rules"
BASE_RULE = (
    '(http.host in {"api.example.com"} and (not cf.tls_client_auth.cert_verified or cf.tls_client_auth.cert_revoked))'
)


def make_client(**kwargs) -> CloudflareClient:
    kwargs.setdefault("retry", NO_RETRIES)
    return CloudflareClient(api_token=TOKEN, base_url=BASE_URL, sleep=lambda _s: None, **kwargs)


def sent_json(call) -> dict:
    return json.loads(call.request.body)


def test_it_creates_a_certificate_and_parses_the_result(cf_http):
    cf_http.post(CERTS_URL, json=envelope(client_certificate()))

    certificate = make_client().create_client_certificate(ZONE_ID, csr=CSR, validity_days=365)

    assert sent_json(cf_http.calls[0]) == {"csr": CSR, "validity_days": 365}
    assert cf_http.calls[0].request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert cf_http.calls[0].request.headers["User-Agent"].startswith("mtls-portal/")
    assert certificate.id == CERT_ID
    assert certificate.status is CertificateStatus.ACTIVE
    assert certificate.issued_on == datetime(2023, 2, 23, 23, 18, tzinfo=UTC)
    assert certificate.expires_on is not None
    assert certificate.expires_on.tzinfo is not None
    assert certificate.certificate_authority is not None
    assert certificate.certificate_authority.name.startswith("Cloudflare Managed CA")
    assert certificate.organizational_unit == "API Developers"


def test_it_lowercases_fingerprints_for_rule_expressions(cf_http):
    colons = ":".join(FINGERPRINT[i : i + 2] for i in range(0, 64, 2)).upper()
    cf_http.get(f"{CERTS_URL}/{CERT_ID}", json=envelope(client_certificate(fingerprint_sha256=colons)))

    certificate = make_client().get_client_certificate(ZONE_ID, CERT_ID)

    assert certificate.fingerprint_sha256 == FINGERPRINT


def test_it_ignores_fields_it_does_not_know(cf_http):
    cf_http.get(f"{CERTS_URL}/{CERT_ID}", json=envelope(client_certificate(brand_new_field={"x": 1})))

    assert make_client().get_client_certificate(ZONE_ID, CERT_ID).id == CERT_ID


def test_it_revokes_with_delete_and_reactivates_with_the_2026_body(cf_http):
    cf_http.delete(f"{CERTS_URL}/{CERT_ID}", json=envelope(client_certificate(status="pending_revocation")))
    cf_http.patch(f"{CERTS_URL}/{CERT_ID}", json=envelope(client_certificate(status="pending_reactivation")))
    client = make_client()

    assert client.revoke_client_certificate(ZONE_ID, CERT_ID).status is CertificateStatus.PENDING_REVOCATION
    assert client.reactivate_client_certificate(ZONE_ID, CERT_ID).status is CertificateStatus.PENDING_REACTIVATION
    assert sent_json(cf_http.calls[1]) == {"reactivate": True}


def test_it_pages_through_three_pages_driven_by_result_info(cf_http):
    ids = [f"00000000-0000-4000-8000-{n:012d}" for n in range(12)]
    for page, chunk in enumerate((ids[0:5], ids[5:10], ids[10:12]), start=1):
        cf_http.get(
            CERTS_URL,
            match=[responses.matchers.query_param_matcher({"page": str(page), "per_page": "5", "status": "active"})],
            json=envelope([client_certificate(i) for i in chunk], result_info=page_info(page, 5, len(chunk), 12)),
        )

    listed = list(make_client().iter_client_certificates(ZONE_ID, status="active", per_page=5))

    assert [c.id for c in listed] == ids
    assert len(cf_http.calls) == 3


def test_it_stops_paging_without_total_pages_when_a_page_is_short(cf_http):
    info = {"page": 1, "per_page": 50, "count": 2, "total_count": 2}  # the TLS schema has no total_pages
    cf_http.get(CERTS_URL, json=envelope([client_certificate(), client_certificate()], result_info=info))

    assert len(list(make_client().iter_client_certificates(ZONE_ID))) == 1  # the same id once
    assert len(cf_http.calls) == 1


def test_it_yields_an_id_once_when_pages_shift_while_listing(cf_http):
    first = [client_certificate(f"00000000-0000-4000-8000-{n:012d}") for n in range(5)]
    second = [first[-1], client_certificate("00000000-0000-4000-8000-000000000099")]
    cf_http.get(CERTS_URL, json=envelope(first, result_info=page_info(1, 5, 5, 7)))
    cf_http.get(CERTS_URL, json=envelope(second, result_info=page_info(2, 5, 2, 7)))

    listed = [c.id for c in make_client().iter_client_certificates(ZONE_ID, per_page=5)]

    assert len(listed) == len(set(listed)) == 6


def test_it_reads_and_replaces_hostname_associations(cf_http):
    url = f"{BASE_URL}/zones/{ZONE_ID}/certificate_authorities/hostname_associations"
    cf_http.get(url, json=envelope({"hostnames": ["api.example.com"]}))
    cf_http.put(url, json=envelope({"hostnames": ["api.example.com", "api2.example.com"]}))
    client = make_client()

    assert client.get_hostname_associations(ZONE_ID).hostnames == ("api.example.com",)
    updated = client.put_hostname_associations(
        ZONE_ID, ["API.example.com.", "api2.example.com"], mtls_certificate_id=MTLS_ID
    )

    assert updated.hostnames == ("api.example.com", "api2.example.com")
    assert sent_json(cf_http.calls[1]) == {
        "hostnames": ["api.example.com", "api2.example.com"],
        "mtls_certificate_id": MTLS_ID,
    }


def test_it_manages_uploaded_cas(cf_http):
    base = f"{BASE_URL}/accounts/{ACCOUNT_ID}/mtls_certificates"
    ca = {
        "id": MTLS_ID,
        "name": "portal-ca",
        "ca": True,
        "certificates": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        "issuer": "CN=Portal CA",
        "serial_number": "01",
        "signature": "ECDSAWithSHA256",
        "expires_on": "2030-01-01T00:00:00Z",
        "uploaded_on": "2026-01-01T00:00:00Z",
    }
    cf_http.post(base, json=envelope(ca))
    cf_http.get(base, json=envelope([ca]))
    cf_http.get(f"{base}/{MTLS_ID}/associations", json=envelope([{"service": "api.example.com", "status": "active"}]))
    cf_http.delete(f"{base}/{MTLS_ID}", json=envelope(ca))
    client = make_client()

    uploaded = client.upload_mtls_certificate(ACCOUNT_ID, certificates=ca["certificates"], name="portal-ca")
    assert uploaded.ca
    assert uploaded.uploaded_on == datetime(2026, 1, 1, tzinfo=UTC)
    assert [c.id for c in client.list_mtls_certificates(ACCOUNT_ID)] == [MTLS_ID]
    assert client.list_mtls_certificate_associations(ACCOUNT_ID, MTLS_ID)[0].service == "api.example.com"
    assert client.delete_mtls_certificate(ACCOUNT_ID, MTLS_ID).id == MTLS_ID
    assert sent_json(cf_http.calls[0]) == {"ca": True, "certificates": ca["certificates"], "name": "portal-ca"}


def test_it_reports_a_missing_entrypoint_as_none(cf_http):
    cf_http.get(ENTRYPOINT_URL, status=404, json=failure((10000, "not found")))

    assert make_client().get_entrypoint(ZONE_ID) is None


def test_it_creates_the_entrypoint_and_adds_updates_and_deletes_one_rule(cf_http):
    base = rule("mtls_portal_base", BASE_RULE)
    cf_http.post(f"{BASE_URL}/zones/{ZONE_ID}/rulesets", json=envelope(ruleset([base])))
    cf_http.post(RULES_URL, json=envelope(ruleset([base])))
    cf_http.patch(f"{RULES_URL}/{RULE_ID}", json=envelope(ruleset([base])))
    cf_http.delete(f"{RULES_URL}/{RULE_ID}", json=envelope(ruleset([])))
    client = make_client()
    spec = RuleSpec(ref="mtls_portal_base", expression=BASE_RULE, description="mTLS required")

    created = client.create_entrypoint(ZONE_ID, rules=[spec])
    client.add_rule(ZONE_ID, RULESET_ID, spec, position=before(""))
    client.update_rule(ZONE_ID, RULESET_ID, RULE_ID, spec, position={"index": 1})
    after_delete = client.delete_rule(ZONE_ID, RULESET_ID, RULE_ID)

    assert created.rule_by_ref("mtls_portal_base") is not None
    assert sent_json(cf_http.calls[0])["kind"] == "zone"
    assert sent_json(cf_http.calls[0])["phase"] == "http_request_firewall_custom"
    assert sent_json(cf_http.calls[1])["position"] == {"before": ""}
    assert sent_json(cf_http.calls[2])["position"] == {"index": 1}
    assert sent_json(cf_http.calls[2])["ref"] == "mtls_portal_base"
    assert after_delete.rules == ()


@pytest.mark.parametrize(
    ("status", "body", "error_class", "codes"),
    [
        (400, failure((1001, "Invalid CSR")), errors.BadRequestError, (1001,)),
        (400, failure((1445, "quota reached")), errors.QuotaExceededError, (1445,)),
        (
            400,
            failure((9106, "Missing X-Auth-Key, X-Auth-Email or Authorization headers")),
            errors.AuthenticationError,
            (9106,),
        ),
        (401, failure((10000, "Authentication error")), errors.AuthenticationError, (10000,)),
        (403, failure((9109, "Invalid access token")), errors.AuthenticationError, (9109,)),
        (403, failure((10001, "not allowed")), errors.PermissionDeniedError, (10001,)),
        (404, failure((7003, "No route for the URI")), errors.NotFoundError, (7003,)),
        (409, failure((1002, "conflict")), errors.ConflictError, (1002,)),
        (429, failure((10100, "More than 1200 requests per 300 seconds reached")), errors.RateLimitedError, (10100,)),
        (500, failure((10002, "internal")), errors.ServerError, (10002,)),
        (200, failure((1003, "success false on a 200")), errors.BadRequestError, (1003,)),
    ],
)
def test_it_raises_a_typed_error_per_status_and_code(cf_http, status, body, error_class, codes):
    cf_http.get(f"{CERTS_URL}/{CERT_ID}", status=status, json=body)

    with pytest.raises(error_class) as caught:
        make_client().get_client_certificate(ZONE_ID, CERT_ID)

    assert type(caught.value) is error_class
    assert caught.value.status == status
    assert caught.value.codes == codes
    assert body["errors"][0]["message"] in str(caught.value)


@pytest.mark.parametrize(
    ("status", "body", "content_type"),
    [
        (502, "<html><body>502 Bad Gateway</body></html>", "text/html"),
        (200, "", "application/json"),
        (200, "{not json", "application/json"),
        (200, '{"result": []}', "application/json"),
    ],
)
def test_it_turns_bodies_that_are_not_envelopes_into_invalid_response_errors(cf_http, status, body, content_type):
    cf_http.get(f"{CERTS_URL}/{CERT_ID}", status=status, body=body, content_type=content_type)

    with pytest.raises(errors.InvalidResponseError) as caught:
        make_client().get_client_certificate(ZONE_ID, CERT_ID)

    assert caught.value.status == status
    assert caught.value.retryable


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda c: c.get_client_certificate("not-a-zone", CERT_ID), "zone id"),
        (lambda c: c.get_client_certificate(ZONE_ID.upper(), CERT_ID), "zone id"),
        (lambda c: c.get_client_certificate(ZONE_ID, "../../etc"), "client certificate id"),
        (lambda c: c.create_client_certificate(ZONE_ID, csr="", validity_days=365), "CSR is empty"),
        (lambda c: c.create_client_certificate(ZONE_ID, csr="hello", validity_days=365), "PEM"),
        (lambda c: c.create_client_certificate(ZONE_ID, csr=CSR * 300, validity_days=365), "larger"),
        (lambda c: c.create_client_certificate(ZONE_ID, csr=CSR, validity_days=0), "validity_days"),
        (lambda c: c.create_client_certificate(ZONE_ID, csr=CSR, validity_days=3651), "validity_days"),
        (lambda c: c.create_client_certificate(ZONE_ID, csr=CSR, validity_days="30"), "whole number"),
        (lambda c: c.create_client_certificate(ZONE_ID, csr=CSR, validity_days=True), "whole number"),
        (lambda c: c.list_client_certificates_page(ZONE_ID, per_page=4), "per_page"),
        (lambda c: c.list_client_certificates_page(ZONE_ID, per_page=51), "per_page"),
        (lambda c: c.list_client_certificates_page(ZONE_ID, status="gone"), "status"),
        (lambda c: c.put_hostname_associations(ZONE_ID, ["not a host"]), "hostname"),
        (lambda c: c.get_hostname_associations(ZONE_ID, mtls_certificate_id="abc"), "UUID"),
        (lambda c: c.upload_mtls_certificate(ACCOUNT_ID, certificates="x"), "PEM"),
        (lambda c: c.add_rule(ZONE_ID, RULESET_ID, RuleSpec(ref="r", expression=" ")), "rule r: the expression"),
        (
            lambda c: c.add_rule(
                ZONE_ID, RULESET_ID, RuleSpec(ref="r", expression="ip.src eq 192.0.2.1", action="Block!")
            ),
            "action",
        ),
        (lambda c: c.add_rule(ZONE_ID, RULESET_ID, RuleSpec(ref="", expression="ip.src eq 192.0.2.1")), "ref"),
        (
            lambda c: c.add_rule(
                ZONE_ID, RULESET_ID, RuleSpec(ref="r", expression="ip.src eq 192.0.2.1"), position={"index": 0}
            ),
            "position",
        ),
        (lambda c: c.delete_rule(ZONE_ID, RULESET_ID, "rule-1"), "rule id"),
    ],
)
def test_it_rejects_bad_arguments_before_any_call(cf_http, call, message):
    with pytest.raises(errors.InvalidArgumentError, match=message):
        call(make_client())

    assert len(cf_http.calls) == 0


def test_it_never_logs_the_token_or_request_bodies(cf_http, caplog):
    caplog.set_level(logging.DEBUG)
    cf_http.post(CERTS_URL, status=503, json=failure((10002, "busy")))
    cf_http.post(CERTS_URL, json=envelope(client_certificate()))

    client = make_client(retry=None)
    with pytest.raises(errors.AmbiguousRequestError):
        client.create_client_certificate(ZONE_ID, csr=CSR, validity_days=30)

    assert caplog.records, "the client logs its calls"
    assert TOKEN not in caplog.text
    assert "MIIBfake" not in caplog.text
    assert TOKEN not in repr(client)


def test_it_draws_every_attempt_from_the_budget(cf_http):
    budget = LocalBudget(limit=2, window=300)
    cf_http.get(f"{CERTS_URL}/{CERT_ID}", json=envelope(client_certificate()))
    client = make_client(budget=budget, wait_for_budget=False)

    client.get_client_certificate(ZONE_ID, CERT_ID)
    client.get_client_certificate(ZONE_ID, CERT_ID)
    with pytest.raises(errors.BudgetExhaustedError) as caught:
        client.get_client_certificate(ZONE_ID, CERT_ID)

    assert len(cf_http.calls) == 2
    assert 0 < caught.value.retry_after <= 300


# -- carrying other teams' rules, full-list PUT, moves (issue 8) ---------------------------------------------

FOREIGN_ID = "4814384a9e5d4991b9815dcfc25d2f1f"
FOREIGN_SKIP = {
    "id": FOREIGN_ID,
    "ref": "team_office_skip",
    "version": "3",
    "last_updated": "2026-01-01T00:00:00.000000Z",
    "action": "skip",
    "action_parameters": {"ruleset": "current"},
    "logging": {"enabled": True},
    "expression": "ip.src in {198.51.100.0/24}",
    "description": "office traffic skips the rest",
    "enabled": True,
}


def test_a_rule_keeps_what_cloudflare_returned_read_only(cf_http):
    cf_http.get(ENTRYPOINT_URL, json=envelope(ruleset([FOREIGN_SKIP, rule("mtls_portal_base", BASE_RULE)])))

    foreign, portal = make_client().get_entrypoint(ZONE_ID).rules

    assert foreign.raw == FOREIGN_SKIP
    assert foreign.action_parameters == {"ruleset": "current"}
    assert foreign.skips_remaining_rules
    assert not portal.skips_remaining_rules
    assert portal.action_parameters is None
    with pytest.raises(TypeError):
        foreign.raw["action"] = "block"  # type: ignore[index]
    with pytest.raises(TypeError):
        foreign.raw["action_parameters"]["ruleset"] = "other"  # type: ignore[index]


def test_it_replaces_the_entrypoint_carrying_foreign_rules_back_with_their_ids(cf_http):
    portal = rule("mtls_portal_base", BASE_RULE)
    cf_http.get(ENTRYPOINT_URL, json=envelope(ruleset([FOREIGN_SKIP, portal])))
    cf_http.put(ENTRYPOINT_URL, json=envelope(ruleset([portal, FOREIGN_SKIP], version="3")))
    client = make_client()
    foreign, current = client.get_entrypoint(ZONE_ID).rules
    changed = RuleSpec(ref=current.ref, expression=BASE_RULE, description="mTLS required", id=current.id)
    new = RuleSpec(ref="mtls_portal_bind_0", expression="ip.src in {192.0.2.0/24}")

    result = client.replace_entrypoint(ZONE_ID, [changed, new, foreign])

    sent = sent_json(cf_http.calls[1])["rules"]
    assert sent[0] == {**changed.to_api(), "id": RULE_ID}
    assert "id" not in sent[1]
    assert sent[2] == {key: value for key, value in FOREIGN_SKIP.items() if key not in ("version", "last_updated")}
    assert [r.ref for r in result.rules] == ["mtls_portal_base", "team_office_skip"]


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ([RuleSpec(ref="a", expression=BASE_RULE), RuleSpec(ref="a", expression=BASE_RULE)], "repeated: a"),
        (
            [RuleSpec(ref="a", expression=BASE_RULE, id=RULE_ID), RuleSpec(ref="b", expression=BASE_RULE, id=RULE_ID)],
            "id",
        ),
        ([RuleSpec(ref="a", expression=BASE_RULE, id="not-an-id")], "rule a: id"),
        ([RuleSpec(ref="a", expression="")], "rule a: the expression is empty"),
    ],
)
def test_it_checks_a_full_list_before_sending_it(cf_http, rules, message):
    with pytest.raises(errors.InvalidArgumentError, match=message):
        make_client().replace_entrypoint(ZONE_ID, rules)

    assert len(cf_http.calls) == 0


def test_it_moves_a_rule_by_sending_its_own_definition_with_the_position(cf_http):
    cf_http.get(ENTRYPOINT_URL, json=envelope(ruleset([FOREIGN_SKIP, rule("mtls_portal_base", BASE_RULE)])))
    cf_http.patch(f"{RULES_URL}/{RULE_ID}", json=envelope(ruleset([rule("mtls_portal_base", BASE_RULE), FOREIGN_SKIP])))
    client = make_client()
    portal = client.get_entrypoint(ZONE_ID).rules[1]

    moved = client.move_rule(ZONE_ID, RULESET_ID, portal, before(""))

    assert sent_json(cf_http.calls[1]) == {
        "ref": "mtls_portal_base",
        "action": "block",
        "expression": BASE_RULE,
        "description": "",
        "enabled": True,
        "position": {"before": ""},
    }
    assert moved.rules[0].ref == "mtls_portal_base"


def test_it_raises_a_rule_limit_error_for_the_emulators_limit_code(cf_http):
    message = "exceeded maximum number of rules in the phase http_request_firewall_custom: 6 out of 5"
    cf_http.post(RULES_URL, status=400, json=failure((errors.RULE_LIMIT_CODE, message)))

    with pytest.raises(errors.RuleLimitError) as caught:
        make_client().add_rule(ZONE_ID, RULESET_ID, RuleSpec(ref="r", expression=BASE_RULE))

    assert isinstance(caught.value, errors.BadRequestError)
    assert not caught.value.retryable
