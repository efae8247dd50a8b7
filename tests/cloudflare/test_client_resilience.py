"""What the client makes of failures after a request may have left (issue 9, point 8).

Every failure that may come after the request was sent is ambiguous; a 429's Retry-After is read whatever its
body; a repeated DELETE that finds the object gone is done; listings name their status; fingerprints are the
certificate's own.
"""

from __future__ import annotations

import random
from urllib.parse import parse_qs, urlparse

import pytest
import requests

from cloudflare import errors
from cloudflare.budget import LocalBudget
from cloudflare.client import CloudflareClient
from cloudflare.models import CertificateStatus, RuleSpec
from cloudflare.retry import NO_RETRIES, RetryPolicy
from tests.cloudflare.fixtures import (
    CERT_ID,
    FINGERPRINT,
    RULE_ID,
    RULESET_ID,
    client_certificate,
    envelope,
    failure,
    fingerprint_of,
    make_certificate_pem,
    page_info,
    rule,
    ruleset,
)
from tests.conftest import BASE_URL, ZONE_ID

CSR = "-----BEGIN CERTIFICATE REQUEST-----\nMIIBfake\n-----END CERTIFICATE REQUEST-----\n"
CERTS_URL = f"{BASE_URL}/zones/{ZONE_ID}/client_certificates"
CERT_URL = f"{CERTS_URL}/{CERT_ID}"
ENTRYPOINT_URL = f"{BASE_URL}/zones/{ZONE_ID}/rulesets/phases/http_request_firewall_custom/entrypoint"
RULE_URL = f"{BASE_URL}/zones/{ZONE_ID}/rulesets/{RULESET_ID}/rules/{RULE_ID}"
OTHER_RULE_ID = "4b14e776cbd158440cc641fdc5ffa01e"
BASE_RULE = (
    '(http.host in {"api.example.com"} and (not cf.tls_client_auth.cert_verified or cf.tls_client_auth.cert_revoked))'
)


def make_client(**kwargs) -> CloudflareClient:
    kwargs.setdefault("retry", RetryPolicy(max_attempts=3, base_delay=0.001))
    return CloudflareClient(api_token="t", base_url=BASE_URL, sleep=lambda _s: None, rng=random.Random(3), **kwargs)


# -- after sending, nothing is "not sent" ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "failure_body",
    [
        requests.exceptions.SSLError("EOF occurred in violation of protocol"),
        requests.exceptions.ChunkedEncodingError("Connection broken: IncompleteRead"),
        requests.exceptions.ContentDecodingError("Received response with content-encoding: gzip, but failed"),
    ],
    ids=["ssl-error", "broken-chunked-body", "undecodable-body"],
)
def test_it_never_repeats_a_create_that_failed_while_the_answer_was_read(cf_http, failure_body):
    cf_http.post(CERTS_URL, body=failure_body)
    cf_http.post(CERTS_URL, json=envelope(client_certificate()))

    with pytest.raises(errors.AmbiguousRequestError, match="reconcile"):
        make_client().create_client_certificate(ZONE_ID, csr=CSR, validity_days=30)

    assert len(cf_http.calls) == 1


def test_it_repeats_a_safe_call_after_a_tls_failure(cf_http):
    cf_http.get(CERT_URL, body=requests.exceptions.SSLError("decryption failed or bad record mac"))
    cf_http.get(CERT_URL, json=envelope(client_certificate()))

    assert make_client().get_client_certificate(ZONE_ID, CERT_ID).id == CERT_ID
    assert len(cf_http.calls) == 2


# -- Retry-After from every 429 ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [{"body": "<html>Too many requests</html>", "content_type": "text/html"}, {"body": ""}],
    ids=["html", "empty"],
)
def test_it_reads_retry_after_from_a_429_without_an_envelope(cf_http, body):
    budget = LocalBudget(limit=100, window=300, clock=lambda: 1000.0)
    cf_http.get(CERT_URL, status=429, headers={"Retry-After": "7"}, **body)

    with pytest.raises(errors.RateLimitedError) as caught:
        make_client(retry=NO_RETRIES, budget=budget, wait_for_budget=False).get_client_certificate(ZONE_ID, CERT_ID)

    assert caught.value.retry_after == 7
    assert budget.try_acquire() == pytest.approx(7), "the shared budget holds off for Retry-After, not the window"


# -- a repeated DELETE that finds the object gone is done -------------------------------------------------------


def test_a_repeated_rule_delete_that_finds_the_rule_gone_is_done(cf_http):
    remaining = ruleset([rule("mtls_portal_base", BASE_RULE, rule_id=OTHER_RULE_ID)], version="9")
    cf_http.delete(RULE_URL, body=requests.exceptions.ReadTimeout("read timed out"))  # deleted, answer lost
    cf_http.delete(RULE_URL, status=404, json=failure((10001, f"could not find rule {RULE_ID} in the ruleset")))
    cf_http.get(ENTRYPOINT_URL, json=envelope(remaining))

    result = make_client().delete_rule(ZONE_ID, RULESET_ID, RULE_ID)

    assert [r.id for r in result.rules] == [OTHER_RULE_ID]
    assert result.version == "9"


def test_a_repeated_certificate_delete_that_finds_it_gone_is_done(cf_http):
    cf_http.delete(CERT_URL, status=502, body="<html>bad gateway</html>", content_type="text/html")
    cf_http.delete(CERT_URL, status=404, json=failure((1406, "Client certificate not found")))

    result = make_client().revoke_client_certificate(ZONE_ID, CERT_ID)

    assert result.id == CERT_ID
    assert result.status is CertificateStatus.REVOKED


def test_a_first_delete_that_finds_nothing_is_still_an_error(cf_http):
    cf_http.delete(RULE_URL, status=404, json=failure((10001, "could not find rule")))

    with pytest.raises(errors.NotFoundError):
        make_client().delete_rule(ZONE_ID, RULESET_ID, RULE_ID)


# -- writes whose outcome is unknown are counted -----------------------------------------------------------------


def test_it_counts_writes_that_may_have_landed_even_when_a_repeat_succeeded(cf_http):
    spec = RuleSpec(ref="mtls_portal_base", expression=BASE_RULE)
    cf_http.patch(RULE_URL, body=requests.exceptions.ReadTimeout("read timed out"))
    cf_http.patch(RULE_URL, json=envelope(ruleset([rule("mtls_portal_base", BASE_RULE)])))
    cf_http.get(ENTRYPOINT_URL, json=envelope(ruleset([rule("mtls_portal_base", BASE_RULE)])))
    client = make_client()

    client.update_rule(ZONE_ID, RULESET_ID, RULE_ID, spec)
    client.get_entrypoint(ZONE_ID)

    assert client.uncertain_writes == 1, "the first PATCH may still commit later, over a newer one"


# -- listings name their status --------------------------------------------------------------------------------


def test_a_full_listing_asks_for_every_status_by_name(cf_http):
    cf_http.get(CERTS_URL, json=envelope([client_certificate()], result_info=page_info(1, 50, 1, 1)))

    list(make_client().iter_client_certificates(ZONE_ID))

    (call,) = cf_http.calls
    assert parse_qs(urlparse(call.request.url).query)["status"] == ["all"]


# -- the fingerprint is the certificate's own -----------------------------------------------------------------


def test_the_fingerprint_is_computed_from_the_certificate(cf_http):
    pem = make_certificate_pem()
    cf_http.get(CERT_URL, json=envelope(client_certificate(certificate=pem, fingerprint_sha256=fingerprint_of(pem))))

    assert make_client().get_client_certificate(ZONE_ID, CERT_ID).fingerprint_sha256 == fingerprint_of(pem)


@pytest.mark.parametrize(
    "overrides",
    [
        {"fingerprint_sha256": "ab" * 32},  # a fingerprint that is not the certificate's
        {"certificate": make_certificate_pem()},  # another certificate beside the reported fingerprint
        {"certificate": "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n"},
    ],
    ids=["wrong-fingerprint", "other-certificate", "unreadable-certificate"],
)
def test_a_fingerprint_that_is_not_the_certificates_is_refused(cf_http, overrides):
    cf_http.post(CERTS_URL, json=envelope(client_certificate(**overrides)))

    with pytest.raises(errors.FingerprintMismatchError, match=r"not the \w+ it reports") as caught:
        make_client().create_client_certificate(ZONE_ID, csr=CSR, validity_days=30)

    assert not caught.value.retryable
    assert isinstance(caught.value, errors.APIError), "callers that handle API errors record a failure"
    assert caught.value.reported == overrides.get("fingerprint_sha256", FINGERPRINT)
