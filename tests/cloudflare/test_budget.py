"""The call budget: a sliding window, local or shared through Redis by several processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid

import pytest
import redis

from cloudflare.budget import LocalBudget, RedisBudget, acquire
from cloudflare.client import CloudflareClient
from cloudflare.errors import BudgetExhaustedError, InvalidArgumentError
from tests.cloudflare.fixtures import CERT_ID, client_certificate, envelope
from tests.conftest import BASE_URL, ZONE_ID


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_it_grants_up_to_the_limit_per_window_then_says_how_long_to_wait():
    clock = FakeClock()
    budget = LocalBudget(limit=3, window=300, clock=clock)

    assert [budget.try_acquire() for _ in range(3)] == [0, 0, 0]
    clock.now = 100
    assert budget.try_acquire() == pytest.approx(200)


def test_it_slides_the_window_instead_of_resetting_it():
    clock = FakeClock()
    budget = LocalBudget(limit=2, window=10, clock=clock)
    budget.try_acquire()
    clock.now = 6
    budget.try_acquire()

    clock.now = 10
    assert budget.try_acquire() == 0, "the first grant has left the window"
    assert budget.try_acquire() == pytest.approx(6), "the second is still in it until t=16"


def test_it_waits_for_a_slot_when_asked_to():
    clock = FakeClock()
    budget = LocalBudget(limit=1, window=60, clock=clock)
    budget.try_acquire()

    acquire(budget, wait=True, clock=clock, sleep=clock.sleep)

    assert clock.now == pytest.approx(60)


def test_it_raises_at_once_when_the_caller_will_not_wait():
    clock = FakeClock()
    budget = LocalBudget(limit=1, window=60, clock=clock)
    budget.try_acquire()

    with pytest.raises(BudgetExhaustedError) as caught:
        acquire(budget, wait=False, clock=clock, sleep=clock.sleep)

    assert caught.value.retry_after == pytest.approx(60)
    assert "try again in 60 s" in str(caught.value)
    assert clock.now == 0


def test_it_raises_when_the_wait_would_exceed_max_wait():
    clock = FakeClock()
    budget = LocalBudget(limit=1, window=60, clock=clock)
    budget.try_acquire()

    with pytest.raises(BudgetExhaustedError):
        acquire(budget, wait=True, max_wait=10, clock=clock, sleep=clock.sleep)
    assert clock.now == 0


def test_a_pause_holds_every_caller_off_until_it_ends():
    clock = FakeClock()
    budget = LocalBudget(limit=100, window=300, clock=clock)
    budget.pause(30)

    assert budget.try_acquire() == pytest.approx(30)
    clock.now = 30
    assert budget.try_acquire() == 0


@pytest.mark.parametrize(("limit", "window"), [(0, 300), (10, 0)])
def test_it_refuses_a_budget_that_can_never_grant(limit, window):
    with pytest.raises(ValueError, match="positive"):
        LocalBudget(limit=limit, window=window)


@pytest.fixture
def redis_budget_key(redis_url):
    key = f"test:budget:{uuid.uuid4().hex}"
    yield key
    connection = redis.Redis.from_url(redis_url)
    connection.delete(f"{key}:grants", f"{key}:paused")


def test_redis_budget_grants_up_to_the_limit(redis_url, redis_budget_key):
    budget = RedisBudget(redis.Redis.from_url(redis_url), key=redis_budget_key, limit=5, window=60)

    results = [budget.try_acquire() for _ in range(6)]

    assert results[:5] == [0] * 5
    assert 59 < results[5] <= 60


def test_redis_budget_pause_is_seen_by_another_client(redis_url, redis_budget_key):
    first = RedisBudget(redis.Redis.from_url(redis_url), key=redis_budget_key, limit=5, window=60)
    second = RedisBudget(redis.Redis.from_url(redis_url), key=redis_budget_key, limit=5, window=60)

    first.pause(45)

    assert 44 < second.try_acquire() <= 45


GRAB_SCRIPT = textwrap.dedent(
    """
    import sys, redis
    from cloudflare.budget import RedisBudget
    url, key, attempts = sys.argv[1], sys.argv[2], int(sys.argv[3])
    budget = RedisBudget(redis.Redis.from_url(url), key=key, limit=100, window=300)
    granted = sum(1 for _ in range(attempts) if budget.try_acquire() == 0)
    print(granted)
    """
)


@pytest.mark.slow
def test_two_processes_share_one_redis_budget(redis_url, redis_budget_key):
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", GRAB_SCRIPT, redis_url, redis_budget_key, "80"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    granted = [int(process.communicate(timeout=60)[0]) for process in processes]

    assert sum(granted) == 100, f"two processes asked 80 each of a 100-call budget and got {granted}"
    assert all(count > 0 for count in granted)


# -- priorities: a reserve that low-priority callers leave free ----------------------------------------------


def test_a_caller_with_a_reserve_leaves_that_many_slots_to_the_others():
    clock = FakeClock()
    budget = LocalBudget(limit=5, window=60, clock=clock)

    assert [budget.try_acquire(reserve=2) for _ in range(3)] == [0, 0, 0]
    clock.now = 10
    assert budget.try_acquire(reserve=2) == pytest.approx(50), "only 2 slots left: the reserve"
    assert [budget.try_acquire() for _ in range(2)] == [0, 0], "callers without a reserve use them"
    assert budget.try_acquire() == pytest.approx(50)


def test_a_reserved_caller_is_told_when_enough_grants_have_left_the_window():
    clock = FakeClock()
    budget = LocalBudget(limit=4, window=100, clock=clock)
    for second in (0, 10, 20, 30):
        clock.now = second
        assert budget.try_acquire() == 0

    clock.now = 40
    # Four grants, reserve 2: one more may be taken when one grant is left, so the grants of t=0, 10 and 20
    # must leave the window; the last of them leaves at t=120.
    assert budget.try_acquire(reserve=2) == pytest.approx(80)
    clock.now = 110
    assert budget.try_acquire(reserve=2) == pytest.approx(10)
    clock.now = 120
    assert budget.try_acquire(reserve=2) == 0


def test_acquire_passes_the_reserve_and_raises_with_the_wait():
    clock = FakeClock()
    budget = LocalBudget(limit=3, window=60, clock=clock)
    budget.try_acquire()
    budget.try_acquire()

    with pytest.raises(BudgetExhaustedError) as caught:
        acquire(budget, wait=False, reserve=1, clock=clock, sleep=clock.sleep)

    assert caught.value.retry_after == pytest.approx(60)
    acquire(budget, wait=False, clock=clock, sleep=clock.sleep)  # no reserve: the last slot is granted


@pytest.mark.parametrize("reserve", [-1, 3, 4])
def test_it_refuses_a_reserve_that_leaves_no_usable_slot(reserve):
    budget = LocalBudget(limit=3, window=60)
    with pytest.raises(ValueError, match="reserve"):
        budget.try_acquire(reserve=reserve)


def test_redis_budget_keeps_the_reserve_for_callers_without_one(redis_url, redis_budget_key):
    budget = RedisBudget(redis.Redis.from_url(redis_url), key=redis_budget_key, limit=5, window=60)

    low = [budget.try_acquire(reserve=2) for _ in range(4)]
    high = [budget.try_acquire() for _ in range(3)]

    assert low[:3] == [0, 0, 0]
    assert 59 < low[3] <= 60
    assert high[:2] == [0, 0]
    assert 59 < high[2] <= 60


def test_redis_budget_tells_a_reserved_caller_when_enough_grants_leave(redis_url, redis_budget_key):
    connection = redis.Redis.from_url(redis_url)
    budget = RedisBudget(connection, key=redis_budget_key, limit=4, window=60)
    # Four grants made 50, 40, 30 and 20 seconds ago (Redis's clock, as the script reads it).
    seconds, microseconds = connection.time()
    now_ms = seconds * 1000 + microseconds // 1000
    connection.zadd(f"{redis_budget_key}:grants", {f"g{age}": now_ms - age * 1000 for age in (50, 40, 30, 20)})

    # Reserve 2: the grants of 50, 40 and 30 seconds ago must leave; the last of them leaves in 30 s.
    assert 29 < budget.try_acquire(reserve=2) <= 30
    assert 9 < budget.try_acquire(reserve=0) <= 10


def test_a_client_with_a_reserve_stops_short_of_it_and_one_without_uses_it(cf_http):
    budget = LocalBudget(limit=3, window=300)
    url = f"{BASE_URL}/zones/{ZONE_ID}/client_certificates/{CERT_ID}"
    cf_http.get(url, json=envelope(client_certificate()))
    low = CloudflareClient(api_token="t", base_url=BASE_URL, budget=budget, wait_for_budget=False, budget_reserve=1)
    high = CloudflareClient(api_token="t", base_url=BASE_URL, budget=budget, wait_for_budget=False)

    low.get_client_certificate(ZONE_ID, CERT_ID)
    low.get_client_certificate(ZONE_ID, CERT_ID)
    with pytest.raises(BudgetExhaustedError):
        low.get_client_certificate(ZONE_ID, CERT_ID)
    high.get_client_certificate(ZONE_ID, CERT_ID)

    assert len(cf_http.calls) == 3


def test_a_client_refuses_a_reserve_as_large_as_the_budget():
    with pytest.raises(InvalidArgumentError, match="budget_reserve"):
        CloudflareClient(api_token="t", budget=LocalBudget(limit=3, window=300), budget_reserve=3)
