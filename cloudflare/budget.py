"""One call budget for every process of the portal.

Cloudflare allows 1,200 calls per 5 minutes per user, across all tokens, and answers one call too many with
a 429 that blocks every call for five minutes (FACTS.md §9). So the portal keeps below that itself: each
HTTP attempt first takes a slot from a sliding window shared by all processes (Redis), or by the threads of
one process when there is no Redis. After a 429 the budget is paused for everyone until Retry-After passes.

A slot is freed one window after its call ENDS, not after it was granted. Cloudflare counts a call when it
arrives, which may be seconds after the grant (a slow connection, a slow network); a slot freed one window
after the grant could let the window's last call overlap the first one's arrival, one call too many. So a
grant first counts from the latest moment its call can end (`hold`: the attempt's timeouts, so a process
killed mid-call still keeps its slot long enough), and `settle()` moves it to the moment the call really
ended. The margin below Cloudflare's 1,200 is the budget's own limit (the portal's setting defaults to
1,000), which also leaves room for people and other tools using the same account.

Priorities: a caller may ask to leave `reserve` slots of the window free. Interactive issuance does, so that
however many certificates users request, revocation and the firewall sync (which ask with no reserve) can
always still reach Cloudflare: a compromised certificate can be revoked and denied at the edge.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from cloudflare.errors import BudgetExhaustedError

DEFAULT_LIMIT = 1200
DEFAULT_WINDOW = 300.0


class CallBudget(Protocol):
    limit: int
    window: float

    def try_acquire(self, reserve: int = 0, *, grant_id: str | None = None, hold: float = 0.0) -> float:
        """Take one slot if at least `reserve` others stay free in the window.

        The slot counts from `hold` seconds from now (the latest the call can end) until `settle(grant_id)`.
        Returns 0 when granted, otherwise the seconds until such a slot may free up.
        """
        ...

    def settle(self, grant_id: str) -> None:
        """The call of this grant has ended: its slot frees one window from now."""
        ...

    def pause(self, seconds: float) -> None:
        """Grant nothing for `seconds` (Cloudflare told us to back off)."""
        ...

    def used(self) -> int:
        """Slots taken in the current window (for the metrics)."""
        ...


def acquire(
    budget: CallBudget,
    *,
    wait: bool,
    max_wait: float | None = None,
    reserve: int = 0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    grant_id: str | None = None,
    hold: float = 0.0,
) -> None:
    """Take a slot leaving `reserve` free: wait up to `max_wait` s if `wait`, else raise BudgetExhaustedError."""
    deadline = None if max_wait is None else clock() + max_wait
    while True:
        retry_after = budget.try_acquire(reserve, grant_id=grant_id, hold=hold)
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
        # Grant id -> the moment its slot counts from (its call's end, or the latest it can end).
        self._grants: dict[str, float] = {}
        self._paused_until = 0.0
        self._lock = threading.Lock()

    def try_acquire(self, reserve: int = 0, *, grant_id: str | None = None, hold: float = 0.0) -> float:
        usable = _usable_slots(self.limit, reserve)
        with self._lock:
            now = self._clock()
            if now < self._paused_until:
                return self._paused_until - now
            self._grants = {key: at for key, at in self._grants.items() if at > now - self.window}
            if len(self._grants) < usable:
                self._grants[grant_id or uuid.uuid4().hex] = now + max(0.0, hold)
                return 0.0
            # Below `usable` again once this many of the earliest-leaving grants have left the window.
            leaving = sorted(self._grants.values())[len(self._grants) - usable]
            return max(0.0, leaving + self.window - now)

    def settle(self, grant_id: str) -> None:
        with self._lock:
            now = self._clock()
            # A grant that has already left the window stays gone.
            if self._grants.get(grant_id, now - self.window) > now - self.window:
                self._grants[grant_id] = now

    def pause(self, seconds: float) -> None:
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)

    def used(self) -> int:
        with self._lock:
            now = self._clock()
            return sum(1 for at in self._grants.values() if at > now - self.window)


def _usable_slots(limit: int, reserve: int) -> int:
    if not 0 <= reserve < limit:
        raise ValueError(f"a reserve must leave at least one of the {limit} slots usable, got {reserve}")
    return limit - reserve


# Runs atomically in Redis with Redis's own clock, so processes on different hosts agree on time.
# KEYS[1]: sorted set of grants (score = ms); KEYS[2]: pause marker with a TTL.
# ARGV[1]: the slots this caller may use (limit minus its reserve); ARGV[2]: window in ms; ARGV[3]: a unique
# member for this grant; ARGV[4]: ms from now until the call can last end (the grant's score until settled).
# Returns 0 when granted, otherwise the milliseconds to wait.
_ACQUIRE_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local usable = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local hold = tonumber(ARGV[4])
local paused = redis.call('PTTL', KEYS[2])
if paused > 0 then return paused end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count < usable then
  redis.call('ZADD', KEYS[1], now + hold, ARGV[3])
  if redis.call('PTTL', KEYS[1]) < window + hold then redis.call('PEXPIRE', KEYS[1], window + hold) end
  return 0
end
-- Below `usable` again once the grant at this rank (and all older ones) has left the window.
local leaving = redis.call('ZRANGE', KEYS[1], count - usable, count - usable, 'WITHSCORES')
return math.max(1, tonumber(leaving[2]) + window - now)
"""

# The call of grant ARGV[1] ended now (Redis's clock): it counts from now. ARGV[2]: window in ms.
_SETTLE_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[2])
-- A grant that has already left the window stays gone.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZADD', KEYS[1], 'XX', 'CH', now, ARGV[1]) == 1 and redis.call('PTTL', KEYS[1]) < window then
  redis.call('PEXPIRE', KEYS[1], window)
end
return 0
"""


# The grants still in the window (those try_acquire has not dropped yet), by Redis's clock. ARGV[1]: window in ms.
_USED_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZCOUNT', KEYS[1], '(' .. (now - tonumber(ARGV[1])), '+inf')
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
        self._settle = redis_client.register_script(_SETTLE_SCRIPT)
        self._used = redis_client.register_script(_USED_SCRIPT)

    def try_acquire(self, reserve: int = 0, *, grant_id: str | None = None, hold: float = 0.0) -> float:
        wait_ms = self._acquire(
            keys=[self._grants_key, self._pause_key],
            args=[
                _usable_slots(self.limit, reserve),
                int(self.window * 1000),
                grant_id or uuid.uuid4().hex,
                max(0, int(hold * 1000)),
            ],
        )
        return int(wait_ms) / 1000.0

    def settle(self, grant_id: str) -> None:
        self._settle(keys=[self._grants_key], args=[grant_id, int(self.window * 1000)])

    def pause(self, seconds: float) -> None:
        milliseconds = max(1, int(seconds * 1000))
        # Keep the longer of an existing pause and this one.
        current = self._redis.pttl(self._pause_key)
        if current is None or int(current) < milliseconds:
            self._redis.set(self._pause_key, "1", px=milliseconds)

    def used(self) -> int:
        return int(self._used(keys=[self._grants_key], args=[int(self.window * 1000)]))

    def clear(self) -> None:
        self._redis.delete(self._grants_key, self._pause_key)
