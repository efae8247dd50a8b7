"""One call budget for every process of the portal.

Cloudflare allows 1,200 calls per 5 minutes per user, across all tokens, and answers one call too many with
a 429 that blocks every call for five minutes (FACTS.md §9). So the portal keeps below that itself: each
HTTP attempt first takes a slot from a sliding window shared by all processes (Redis), or by the threads of
one process when there is no Redis. After a 429 the budget is paused for everyone until Retry-After passes.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from cloudflare.errors import BudgetExhaustedError

DEFAULT_LIMIT = 1200
DEFAULT_WINDOW = 300.0


class CallBudget(Protocol):
    limit: int
    window: float

    def try_acquire(self) -> float:
        """Take one slot. Returns 0 when granted, otherwise the seconds until a slot may free up."""
        ...

    def pause(self, seconds: float) -> None:
        """Grant nothing for `seconds` (Cloudflare told us to back off)."""
        ...


def acquire(
    budget: CallBudget,
    *,
    wait: bool,
    max_wait: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Take a slot, waiting up to `max_wait` seconds if `wait`, else raise BudgetExhaustedError at once."""
    deadline = None if max_wait is None else clock() + max_wait
    while True:
        retry_after = budget.try_acquire()
        if retry_after <= 0:
            return
        if not wait:
            raise BudgetExhaustedError(retry_after)
        if deadline is not None:
            remaining = deadline - clock()
            if remaining < retry_after:
                raise BudgetExhaustedError(retry_after)
        sleep(retry_after)


class LocalBudget:
    """Sliding window shared by the threads of one process (the embedded default, with no Redis)."""

    def __init__(
        self,
        limit: int = DEFAULT_LIMIT,
        window: float = DEFAULT_WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("a call budget needs a positive limit and window")
        self.limit = limit
        self.window = window
        self._clock = clock
        self._grants: deque[float] = deque()
        self._paused_until = 0.0
        self._lock = threading.Lock()

    def try_acquire(self) -> float:
        with self._lock:
            now = self._clock()
            if now < self._paused_until:
                return self._paused_until - now
            while self._grants and self._grants[0] <= now - self.window:
                self._grants.popleft()
            if len(self._grants) < self.limit:
                self._grants.append(now)
                return 0.0
            return self._grants[0] + self.window - now

    def pause(self, seconds: float) -> None:
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)


# Runs atomically in Redis with Redis's own clock, so processes on different hosts agree on time.
# KEYS[1]: sorted set of grants (score = ms); KEYS[2]: pause marker with a TTL.
# ARGV[1]: limit; ARGV[2]: window in ms; ARGV[3]: a unique member for this grant.
# Returns 0 when granted, otherwise the milliseconds to wait.
_ACQUIRE_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local paused = redis.call('PTTL', KEYS[2])
if paused > 0 then return paused end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + window - now)
"""


class RedisBudget:
    """Sliding window shared by every process that uses the same Redis and key."""

    def __init__(
        self,
        redis_client: Any,
        *,
        key: str = "cloudflare:budget",
        limit: int = DEFAULT_LIMIT,
        window: float = DEFAULT_WINDOW,
    ) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("a call budget needs a positive limit and window")
        self.limit = limit
        self.window = window
        self._redis = redis_client
        self._grants_key = f"{key}:grants"
        self._pause_key = f"{key}:paused"
        self._acquire = redis_client.register_script(_ACQUIRE_SCRIPT)

    def try_acquire(self) -> float:
        wait_ms = self._acquire(
            keys=[self._grants_key, self._pause_key],
            args=[self.limit, int(self.window * 1000), uuid.uuid4().hex],
        )
        return int(wait_ms) / 1000.0

    def pause(self, seconds: float) -> None:
        milliseconds = max(1, int(seconds * 1000))
        # Keep the longer of an existing pause and this one.
        current = self._redis.pttl(self._pause_key)
        if current is None or int(current) < milliseconds:
            self._redis.set(self._pause_key, "1", px=milliseconds)

    def clear(self) -> None:
        self._redis.delete(self._grants_key, self._pause_key)
