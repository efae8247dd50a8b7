"""A web request's deadline: every attempt, backoff, Retry-After sleep and budget wait fits in it (issue 9, point 3)."""

from __future__ import annotations

import random
import time

import pytest
import requests

from cloudflare import errors
from cloudflare.budget import LocalBudget
from cloudflare.client import CloudflareClient
from cloudflare.retry import RetryPolicy
from cloudflare_emulator import Emulator
from cloudflare_emulator.wsgi_transport import mount_wsgi_app
from tests.cloudflare.fixtures import CERT_ID, client_certificate, envelope
from tests.cloudflare.test_client_retries import CERT_URL, RATE_LIMITED, Recorder
from tests.conftest import BASE_URL, ZONE_ID


@pytest.fixture
def slept() -> Recorder:
    return Recorder()


def web_client(slept: Recorder, **kwargs) -> CloudflareClient:
    """The shape of certificates.cloudflare_client' web client, with a fake clock that moves when the client sleeps."""
    return CloudflareClient(
        api_token="t",
        base_url=BASE_URL,
        sleep=slept,
        clock=slept.clock,
        rng=random.Random(7),
        retry=kwargs.pop("retry", RetryPolicy(max_attempts=10, base_delay=1, max_retry_after=2)),
        budget=kwargs.pop("budget", LocalBudget(limit=100, window=300, clock=slept.clock)),
        max_budget_wait=kwargs.pop("max_budget_wait", 2),
        deadline=kwargs.pop("deadline", 10),
        timeout=kwargs.pop("timeout", (5, 4)),
        **kwargs,
    )


def slow_failure(slept: Recorder, seconds: float, timeouts: list):
    """Each attempt takes `seconds` of the fake clock, then Cloudflare answers 500."""

    def answer(request):
        timeouts.append(request.req_kwargs["timeout"])
        slept.now += seconds
        return 500, {}, '{"success": false, "errors": [{"code": 10002, "message": "internal"}]}'

    return answer


def test_retries_stop_when_the_deadline_leaves_no_room_and_say_the_call_may_have_happened(cf_http, slept):
    timeouts: list = []
    cf_http.add_callback("GET", CERT_URL, callback=slow_failure(slept, 3, timeouts))
    client = web_client(slept)
    started = slept.now

    with pytest.raises(errors.DeadlineAfterSendError, match="10 s deadline"):
        client.get_client_certificate(ZONE_ID, CERT_ID)

    assert slept.now - started <= 10, "nothing waited past the deadline"
    assert len(cf_http.calls) < 10, "the attempts left were given up"
    assert all(read <= 10 for _, read in timeouts)


def test_each_attempts_timeout_is_cut_to_what_is_left(cf_http, slept):
    timeouts: list = []
    cf_http.add_callback("GET", CERT_URL, callback=slow_failure(slept, 3.5, timeouts))
    client = web_client(slept, retry=RetryPolicy(max_attempts=10, base_delay=0.001))

    with pytest.raises(errors.DeadlineExceededError):
        client.get_client_certificate(ZONE_ID, CERT_ID)

    assert timeouts[0] == (5, 4)
    # The third attempt starts at about 7 s: 3 s are left of the deadline.
    assert timeouts[2][1] == pytest.approx(3, abs=0.01)
    assert timeouts[2][0] == pytest.approx(3, abs=0.01)


def test_a_short_retry_after_is_waited_within_the_deadline(cf_http, slept):
    cf_http.get(CERT_URL, status=429, json=RATE_LIMITED, headers={"Retry-After": "1"})
    cf_http.get(CERT_URL, json=envelope(client_certificate()))

    web_client(slept).get_client_certificate(ZONE_ID, CERT_ID)

    assert len(cf_http.calls) == 2
    assert 1 <= sum(slept.sleeps) <= 2


def test_a_retry_after_longer_than_a_web_request_may_wait_fails_at_once(cf_http, slept):
    cf_http.get(CERT_URL, status=429, json=RATE_LIMITED, headers={"Retry-After": "3"})

    with pytest.raises(errors.RateLimitedError) as caught:
        web_client(slept).get_client_certificate(ZONE_ID, CERT_ID)

    assert caught.value.retry_after == 3
    assert slept.sleeps == []


def test_a_retry_after_that_would_pass_the_deadline_is_not_slept(cf_http, slept):
    cf_http.get(CERT_URL, status=429, json=RATE_LIMITED, headers={"Retry-After": "2"})
    client = web_client(slept, deadline=2)

    with pytest.raises(errors.RateLimitedError):
        client.get_client_certificate(ZONE_ID, CERT_ID)

    assert slept.sleeps == []


def test_concurrent_web_calls_wait_out_a_short_pause_instead_of_failing(cf_http, slept):
    """One 429 with Retry-After: 1 pauses the shared budget; the other users' calls wait a second, then go."""
    budget = LocalBudget(limit=100, window=300, clock=slept.clock)
    budget.pause(1)
    cf_http.get(CERT_URL, json=envelope(client_certificate()))

    web_client(slept, budget=budget).get_client_certificate(ZONE_ID, CERT_ID)

    assert sum(slept.sleeps) == pytest.approx(1)


def test_a_budget_wait_longer_than_a_web_request_may_wait_fails_at_once(cf_http, slept):
    budget = LocalBudget(limit=100, window=300, clock=slept.clock)
    budget.pause(30)

    with pytest.raises(errors.BudgetExhaustedError) as caught:
        web_client(slept, budget=budget).get_client_certificate(ZONE_ID, CERT_ID)

    assert caught.value.retry_after == pytest.approx(30)
    assert slept.sleeps == []
    assert len(cf_http.calls) == 0


def test_the_deadline_counts_every_call_of_the_request(cf_http, slept):
    timeouts: list = []
    cf_http.add_callback("GET", CERT_URL, callback=slow_failure(slept, 10, timeouts))
    client = web_client(slept, retry=RetryPolicy(max_attempts=1))

    with pytest.raises(errors.ServerError):
        client.get_client_certificate(ZONE_ID, CERT_ID)
    with pytest.raises(errors.DeadlineExceededError) as caught:
        client.get_client_certificate(ZONE_ID, CERT_ID)

    assert not isinstance(caught.value, errors.AmbiguousRequestError), "the second call was never sent"
    assert len(cf_http.calls) == 1


def test_a_worker_client_has_no_deadline(cf_http, slept):
    timeouts: list = []
    cf_http.add_callback("GET", CERT_URL, callback=slow_failure(slept, 30, timeouts))
    client = CloudflareClient(
        api_token="t", base_url=BASE_URL, sleep=slept, clock=slept.clock, retry=RetryPolicy(max_attempts=3)
    )

    with pytest.raises(errors.ServerError):
        client.get_client_certificate(ZONE_ID, CERT_ID)

    assert len(cf_http.calls) == 3
    assert timeouts == [(5.0, 30.0)] * 3


def test_against_the_emulators_latency_a_web_call_returns_within_its_deadline():
    """Real time: the emulator holds every answer 5 s; a 1 s deadline ends the call after about 1 s."""
    emulator = Emulator()
    session = requests.Session()
    mount_wsgi_app(session, BASE_URL, emulator.wsgi_app)
    emulator.faults.latency(5, times=20)
    client = CloudflareClient(
        api_token="t",
        base_url=BASE_URL,
        session=session,
        timeout=(0.2, 0.4),
        retry=RetryPolicy(max_attempts=10, base_delay=0.01),
        deadline=1.0,
    )
    started = time.monotonic()

    with pytest.raises(errors.DeadlineAfterSendError):
        client.list_client_certificates_page(ZONE_ID)

    assert time.monotonic() - started < 1.3
