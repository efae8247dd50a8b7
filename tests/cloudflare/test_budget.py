"""The call budget: a sliding window, local or shared through Redis by several processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid

import pytest
import redis

from cloudflare.budget import LocalBudget, RedisBudget, acquire
from cloudflare.errors import BudgetExhaustedError


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
