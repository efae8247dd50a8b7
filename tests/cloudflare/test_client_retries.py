"""Every row of the retry table in cloudflare/retry.py."""

from __future__ import annotations

import random

import pytest
import requests
import responses

from cloudflare import errors
from cloudflare.budget import LocalBudget
from cloudflare.client import CloudflareClient, parse_retry_after
from cloudflare.retry import RetryPolicy
from tests.cloudflare.fixtures import CERT_ID, client_certificate, envelope, failure
from tests.conftest import BASE_URL, ZONE_ID

CSR = "-----BEGIN CERTIFICATE REQUEST-----\nMIIBfake\n-----END CERTIFICATE REQUEST-----\n"
CERTS_URL = f"{BASE_URL}/zones/{ZONE_ID}/client_certificates"
CERT_URL = f"{CERTS_URL}/{CERT_ID}"
RATE_LIMITED = failure((10100, "More than 1200 requests per 300 seconds reached"))


class Recorder:
    """Stands in for time.sleep and moves a fake clock, so budgets see the time the client waited."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []
        self.now = 1000.0

    def __call__(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


@pytest.fixture
def slept() -> Recorder:
    return Recorder()


def make_client(slept: Recorder, **kwargs) -> CloudflareClient:
    return CloudflareClient(
        api_token="t",
        base_url=BASE_URL,
        sleep=slept,
        rng=random.Random(7),
        retry=kwargs.pop("retry", RetryPolicy(max_attempts=4, base_delay=0.5, max_delay=20)),
        **kwargs,
    )


def ok_certificate():
    return {"json": envelope(client_certificate())}


# -- safe to repeat: GET, PUT, PATCH, DELETE -----------------------------------------------------------------


@pytest.mark.parametrize(
    "failure_response",
    [
        {"status": 500, "json": failure((10002, "internal"))},
        {"status": 502, "body": "<html>bad gateway</html>", "content_type": "text/html"},
        {"status": 503, "body": ""},
        {"body": requests.exceptions.ReadTimeout("read timed out")},
        {"body": requests.exceptions.ConnectTimeout("connect timed out")},
        {"body": requests.exceptions.ConnectionError("connection reset by peer")},
    ],
    ids=["500", "502-html", "503-empty", "read-timeout", "connect-timeout", "connection-dropped"],
)
def test_it_retries_a_safe_call_after_a_transient_failure(cf_http, slept, failure_response):
    cf_http.get(CERT_URL, **failure_response)
    cf_http.get(CERT_URL, **ok_certificate())

    assert make_client(slept).get_client_certificate(ZONE_ID, CERT_ID).id == CERT_ID
    assert len(cf_http.calls) == 2
    assert len(slept.sleeps) == 1


def test_it_backs_off_exponentially_with_jitter_under_a_cap(cf_http, slept):
    for _ in range(4):
        cf_http.get(CERT_URL, status=500, json=failure((10002, "internal")))
    policy = RetryPolicy(max_attempts=4, base_delay=1.0, max_delay=3.0)

    with pytest.raises(errors.ServerError):
        make_client(slept, retry=policy).get_client_certificate(ZONE_ID, CERT_ID)

    assert len(cf_http.calls) == 4
    ceilings = [1.0, 2.0, 3.0]  # 1, 2, 4 capped at 3
    assert len(slept.sleeps) == 3
    assert all(0 <= s <= c for s, c in zip(slept.sleeps, ceilings, strict=True))
    assert len(set(slept.sleeps)) == 3, "jitter makes the waits differ"


def test_it_gives_up_after_max_attempts_and_raises_the_last_error(cf_http, slept):
    for _ in range(3):
        cf_http.put(f"{BASE_URL}/zones/{ZONE_ID}/certificate_authorities/hostname_associations", status=503, body="")

    with pytest.raises(errors.InvalidResponseError):
        make_client(slept, retry=RetryPolicy(max_attempts=3)).put_hostname_associations(ZONE_ID, ["api.example.com"])

    assert len(cf_http.calls) == 3


@pytest.mark.parametrize(
    ("status", "body", "error_class"),
    [
        (400, failure((1001, "bad")), errors.BadRequestError),
        (403, failure((9109, "Invalid access token")), errors.AuthenticationError),
        (404, failure((7003, "No route for the URI")), errors.NotFoundError),
    ],
)
def test_it_does_not_retry_a_client_error(cf_http, slept, status, body, error_class):
    cf_http.delete(CERT_URL, status=status, json=body)

    with pytest.raises(error_class):
        make_client(slept).revoke_client_certificate(ZONE_ID, CERT_ID)

    assert len(cf_http.calls) == 1
    assert slept.sleeps == []


# -- 429: honour Retry-After, for every method -------------------------------------------------------------


def test_it_waits_for_retry_after_on_429_and_pauses_the_shared_budget(cf_http, slept):
    budget = LocalBudget(limit=100, window=300, clock=slept.clock)
    cf_http.post(CERTS_URL, status=429, json=RATE_LIMITED, headers={"Retry-After": "7"})
    cf_http.post(CERTS_URL, **ok_certificate())
    client = make_client(slept, budget=budget, wait_for_budget=False)

    # A 429 means Cloudflare refused the call, so even the create is repeated.
    assert client.create_client_certificate(ZONE_ID, csr=CSR, validity_days=30).id == CERT_ID

    assert len(cf_http.calls) == 2
    assert 7 <= slept.sleeps[0] <= 7.5, "waits Retry-After plus a little jitter"


def test_it_pauses_the_shared_budget_for_retry_after(cf_http, slept):
    budget = LocalBudget(limit=100, window=300, clock=slept.clock)
    cf_http.get(CERT_URL, status=429, json=RATE_LIMITED, headers={"Retry-After": "120"})

    with pytest.raises(errors.RateLimitedError):
        make_client(slept, budget=budget, wait_for_budget=False).get_client_certificate(ZONE_ID, CERT_ID)

    assert budget.try_acquire() == pytest.approx(120), "every other caller holds off too"
    slept(120)
    assert budget.try_acquire() == 0


def test_it_raises_instead_of_sleeping_through_a_long_lockout(cf_http, slept):
    cf_http.get(CERT_URL, status=429, json=RATE_LIMITED, headers={"Retry-After": "300"})

    with pytest.raises(errors.RateLimitedError) as caught:
        make_client(slept).get_client_certificate(ZONE_ID, CERT_ID)

    assert caught.value.retry_after == 300
    assert caught.value.retryable
    assert slept.sleeps == []
    assert len(cf_http.calls) == 1


def test_it_pauses_for_the_whole_window_when_a_429_has_no_retry_after(cf_http, slept):
    budget = LocalBudget(limit=10, window=300, clock=slept.clock)
    cf_http.get(CERT_URL, status=429, json=RATE_LIMITED)

    with pytest.raises(errors.RateLimitedError):
        make_client(slept, budget=budget, wait_for_budget=False).get_client_certificate(ZONE_ID, CERT_ID)

    assert budget.try_acquire() == pytest.approx(300)


# -- not safe to repeat: the create POST ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "failure_response",
    [
        {"body": requests.exceptions.ReadTimeout("read timed out")},
        {"body": requests.exceptions.ConnectionError("connection reset by peer")},
        {"status": 500, "json": failure((10002, "internal"))},
        {"status": 502, "body": "<html>bad gateway</html>", "content_type": "text/html"},
    ],
    ids=["read-timeout", "connection-dropped", "500", "502-html"],
)
def test_it_never_repeats_a_create_that_may_have_reached_cloudflare(cf_http, slept, failure_response):
    cf_http.post(CERTS_URL, **failure_response)
    cf_http.post(CERTS_URL, **ok_certificate())

    with pytest.raises(errors.AmbiguousRequestError, match="reconcile"):
        make_client(slept).create_client_certificate(ZONE_ID, csr=CSR, validity_days=30)

    assert len(cf_http.calls) == 1
    assert slept.sleeps == []


def test_it_repeats_a_create_whose_connection_was_never_made(cf_http, slept):
    cf_http.post(CERTS_URL, body=requests.exceptions.ConnectTimeout("connect timed out"))
    cf_http.post(CERTS_URL, **ok_certificate())

    assert make_client(slept).create_client_certificate(ZONE_ID, csr=CSR, validity_days=30).id == CERT_ID
    assert len(cf_http.calls) == 2


def test_it_does_not_retry_the_quota_error(cf_http, slept):
    cf_http.post(CERTS_URL, status=400, json=failure((1445, "quota reached")))

    with pytest.raises(errors.QuotaExceededError):
        make_client(slept).create_client_certificate(ZONE_ID, csr=CSR, validity_days=30)

    assert len(cf_http.calls) == 1


@pytest.mark.parametrize(
    ("header", "expected"),
    [("12", 12.0), (" 3 ", 3.0), (None, None), ("", None), ("soon", None), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)],
)
def test_it_parses_retry_after(header, expected):
    assert parse_retry_after(header) == expected


def test_responses_sees_no_unexpected_calls(cf_http):
    """Guard: with nothing registered, responses refuses the call instead of reaching the internet."""
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(CERT_URL, timeout=1)
    assert isinstance(cf_http, responses.RequestsMock)
