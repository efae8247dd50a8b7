"""When to repeat a failed call, and how long to wait first.

The retry table (tests/cloudflare/test_client_retries.py walks every row):

| outcome                                   | GET, PUT, PATCH, DELETE | POST (not safe to repeat)       |
|-------------------------------------------|-------------------------|---------------------------------|
| 429                                       | retry after Retry-After | retry after Retry-After         |
| connection not made (nothing was sent)    | retry with backoff      | retry with backoff              |
| 5xx, or a body that is not an envelope    | retry with backoff      | AmbiguousRequestError, no retry |
| read timeout, connection dropped mid-call | retry with backoff      | AmbiguousRequestError, no retry |
| TLS error, answer unreadable (may be sent)| retry with backoff      | AmbiguousRequestError, no retry |
| 404 on a DELETE repeated after one of the above | done (it is gone) | -                               |
| other 4xx                                 | raise                   | raise                           |

Only a connection that provably never opened (refused, DNS, connect timeout) counts as "nothing was sent".
A 429 means Cloudflare refused the call, so even a create may be repeated. A 5xx or a timeout after a
create may mean the certificate was made: the caller reconciles by listing before trying again (DESIGN.md).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 20.0
    # Cloudflare's lockout lasts five minutes; a caller serving a web page should not sleep that long,
    # so a longer Retry-After is raised to the caller (a Celery task retries later instead).
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Full-jitter exponential backoff before attempt number `attempt + 1` (attempts count from 1)."""
        ceiling = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return rng.uniform(0, ceiling)

    def delay_for_retry_after(self, retry_after: float | None, attempt: int, rng: random.Random) -> float:
        if retry_after is None:
            return self.backoff(attempt, rng)
        # A little jitter on top so that processes told the same Retry-After do not return in lockstep.
        return retry_after + rng.uniform(0, min(1.0, self.base_delay))


NO_RETRIES = RetryPolicy(max_attempts=1)
