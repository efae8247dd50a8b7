"""Cloudflare's API rate limit (FACTS.md §9): N requests per window per user, sliding; once exceeded,
every call is blocked for the next window. Kept in the shared state so all processes draw from one budget.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    remaining: int
    retry_after: int = 0
    reset_at: float = 0.0


def bucket_key(token: str) -> str:
    # A digest, so the bearer token itself is never written to the state file.
    return hashlib.sha256(token.encode("utf-8")).hexdigest()[:24]


def admit(buckets: dict[str, Any], key: str, now: float, limit: int, window: float) -> Verdict:
    """Count one request against `key`'s bucket, or refuse it; mutates `buckets`."""
    bucket = buckets.setdefault(key, {"hits": [], "blocked_until": 0.0})
    blocked_until = float(bucket["blocked_until"])
    if now < blocked_until:
        return _refused(blocked_until, now)
    hits = [hit for hit in bucket["hits"] if hit > now - window]
    if len(hits) >= limit:
        bucket["hits"] = hits
        bucket["blocked_until"] = now + window
        return _refused(now + window, now)
    hits.append(now)
    bucket["hits"] = hits
    return Verdict(allowed=True, remaining=max(limit - len(hits), 0))


def _refused(blocked_until: float, now: float) -> Verdict:
    return Verdict(
        allowed=False,
        remaining=0,
        retry_after=max(math.ceil(blocked_until - now), 1),
        reset_at=blocked_until,
    )
