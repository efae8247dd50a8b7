"""A slot of the call budget is freed one window after its call ends, not after the grant (issue 9, point 5)."""

from __future__ import annotations

import time
import uuid

import pytest
import redis
import requests

from cloudflare.budget import LocalBudget, RedisBudget
from cloudflare.client import CloudflareClient
from cloudflare.retry import NO_RETRIES
from cloudflare_emulator import Emulator
from cloudflare_emulator.wsgi_transport import mount_wsgi_app
from tests.conftest import BASE_URL, ZONE_ID
from tests.emulator.conftest import FakeClock


class SlowFirstCall:
    """WSGI middleware: the first request reaches the emulator `seconds` after it was sent (a slow network)."""

    def __init__(self, app, clock: FakeClock, seconds: float) -> None:
        self.app, self.clock, self.seconds, self.seen = app, clock, seconds, 0

    def __call__(self, environ, start_response):
        self.seen += 1
        if self.seen == 1:
            self.clock.advance(self.seconds)
        return self.app(environ, start_response)


def test_at_the_emulators_limit_a_slow_first_call_does_not_let_a_101st_call_through():
    """The finding: budget 100 per 60 s, like the emulator; 101 calls reached it within 60 s."""
    clock = FakeClock(time.time())
    emulator = Emulator(clock=clock, rate_limit=100, rate_window=60)
    session = requests.Session()
    mount_wsgi_app(session, BASE_URL, SlowFirstCall(emulator.wsgi_app, clock, seconds=5))
    client = CloudflareClient(
        api_token="t",
        base_url=BASE_URL,
        session=session,
        budget=LocalBudget(limit=100, window=60, clock=clock),
        retry=NO_RETRIES,
        sleep=clock.advance,
    )
    started = clock.now
    for _ in range(100):  # the first is granted at 0 and counted by the emulator at 5 s; the others at 5 s
        client.list_client_certificates_page(ZONE_ID)
    clock.advance(55)  # one window after the first grant

    client.list_client_certificates_page(ZONE_ID)  # a 429 here is the lockout the budget exists to prevent

    assert clock.now - started >= 65, "it waited until one window after the first call had ended"
    assert [entry for entry in emulator.request_log if entry.status == 429] == []


def test_a_grant_counts_from_the_latest_moment_its_call_can_end_until_settled():
    clock = FakeClock(0)
    budget = LocalBudget(limit=1, window=60, clock=clock)

    assert budget.try_acquire(grant_id="a", hold=35) == 0
    assert budget.try_acquire() == pytest.approx(95), "a killed caller never settles: 35 s + the window"
    clock.advance(2)
    budget.settle("a")
    assert budget.try_acquire() == pytest.approx(60), "settled when its call ended, 2 s in"
    clock.advance(60)
    assert budget.try_acquire() == 0


def test_settling_an_unknown_or_expired_grant_changes_nothing():
    clock = FakeClock(0)
    budget = LocalBudget(limit=1, window=10, clock=clock)
    budget.try_acquire(grant_id="a")
    clock.advance(11)
    budget.settle("a")
    budget.settle("never-granted")

    assert budget.try_acquire() == 0


def test_the_client_settles_its_grant_when_the_call_fails_too():
    clock = FakeClock(0)
    budget = LocalBudget(limit=1, window=60, clock=clock)
    session = requests.Session()

    def refuse(*args, **kwargs):
        clock.advance(3)
        raise requests.exceptions.ReadTimeout("read timed out")

    session.request = refuse  # type: ignore[method-assign]
    client = CloudflareClient(
        api_token="t", base_url=BASE_URL, session=session, budget=budget, retry=NO_RETRIES, timeout=(5, 30)
    )

    with pytest.raises(Exception, match="read timeout"):
        client.list_client_certificates_page(ZONE_ID)

    assert budget.try_acquire() == pytest.approx(60), "freed one window after the call ended at 3 s"


@pytest.fixture
def redis_budget_key(redis_url):
    key = f"test:budget-margin:{uuid.uuid4().hex}"
    yield key
    redis.Redis.from_url(redis_url).delete(f"{key}:grants", f"{key}:paused")


def test_redis_budget_holds_a_grant_until_its_call_can_end_then_until_one_window_after_it_did(
    redis_url, redis_budget_key
):
    budget = RedisBudget(redis.Redis.from_url(redis_url), key=redis_budget_key, limit=1, window=60)

    assert budget.try_acquire(grant_id="a", hold=35) == 0
    assert 94 <= budget.try_acquire() <= 95
    budget.settle("a")
    assert 59 <= budget.try_acquire() <= 60
    assert redis.Redis.from_url(redis_url).pttl(f"{redis_budget_key}:grants") > 59_000


def test_redis_budget_does_not_bring_back_a_grant_that_left_the_window(redis_url, redis_budget_key):
    budget = RedisBudget(redis.Redis.from_url(redis_url), key=redis_budget_key, limit=1, window=0.2)
    budget.try_acquire(grant_id="a")
    time.sleep(0.3)
    budget.settle("a")

    assert budget.try_acquire() == 0
