"""Cloudflare calls counted for /metrics: by endpoint and HTTP status, with their latency.

Every process calls Cloudflare (web for issuance and revocation, workers for polling and the sync), but /metrics is
answered by a web process. Counters kept in each process's memory would show the web's calls only, and
prometheus-client's multiprocess mode shares files between the processes of one host, not between containers. So
with REDIS_URL the counts live in two Redis hashes every process adds to (one pipelined round trip a call, beside the
call budget's own), and the scrape reads them back (portal/metrics.py). Without Redis (development) each process
counts its own calls.

The client reports each attempt through its `on_call` hook (certificates/cloudflare_client.py) with the path's ids
already replaced by placeholders, so the endpoints are a short fixed list and so are the series.
"""

from __future__ import annotations

import functools
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Protocol

from django.conf import settings

# Seconds; Cloudflare answers most calls in well under a second, and a worker waits up to CLOUDFLARE_TIMEOUT (30 s).
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
CALLS_KEY = "portal:metrics:cloudflare:calls"
LATENCY_KEY = "portal:metrics:cloudflare:latency"
NO_ANSWER = "none"  # the status label of an attempt that got no HTTP answer (timeout, connection failure)
_SEPARATOR = " "  # neither methods nor path templates hold a space


@dataclass
class Latency:
    """One endpoint's histogram: counts per bucket (not cumulative; the last one is above every bound), sum, count."""

    buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    total_seconds: float = 0.0
    count: int = 0


@dataclass
class CallStats:
    calls: dict[tuple[str, str, str], int] = field(default_factory=dict)  # (method, endpoint, status) -> count
    latency: dict[tuple[str, str], Latency] = field(default_factory=lambda: defaultdict(Latency))


class CallStore(Protocol):
    def record(self, method: str, endpoint: str, status: int | None, seconds: float) -> None: ...

    def read(self) -> CallStats: ...


def bucket_of(seconds: float) -> int:
    return next((index for index, bound in enumerate(LATENCY_BUCKETS) if seconds <= bound), len(LATENCY_BUCKETS))


def _status_label(status: int | None) -> str:
    return NO_ANSWER if status is None else str(status)


class LocalCallStore:
    """Per process: development without Redis, and tests."""

    def __init__(self) -> None:
        self._stats = CallStats()
        self._lock = threading.Lock()

    def record(self, method: str, endpoint: str, status: int | None, seconds: float) -> None:
        with self._lock:
            key = (method, endpoint, _status_label(status))
            self._stats.calls[key] = self._stats.calls.get(key, 0) + 1
            latency = self._stats.latency[(method, endpoint)]
            latency.buckets[bucket_of(seconds)] += 1
            latency.total_seconds += seconds
            latency.count += 1

    def read(self) -> CallStats:
        with self._lock:
            stats = CallStats(calls=dict(self._stats.calls))
            for key, latency in self._stats.latency.items():
                stats.latency[key] = Latency(list(latency.buckets), latency.total_seconds, latency.count)
            return stats


class RedisCallStore:
    """Shared by every process using the same Redis. Fields: `METHOD ENDPOINT STATUS` in the calls hash;
    `METHOD ENDPOINT bucket<i>`, `... sum` and `... count` in the latency hash."""

    def __init__(self, redis_client: Any) -> None:
        self._redis = redis_client

    def record(self, method: str, endpoint: str, status: int | None, seconds: float) -> None:
        endpoint_field = _SEPARATOR.join((method, endpoint))
        pipe = self._redis.pipeline(transaction=False)
        pipe.hincrby(CALLS_KEY, _SEPARATOR.join((endpoint_field, _status_label(status))), 1)
        pipe.hincrby(LATENCY_KEY, f"{endpoint_field} bucket{bucket_of(seconds)}", 1)
        pipe.hincrbyfloat(LATENCY_KEY, f"{endpoint_field} sum", seconds)
        pipe.hincrby(LATENCY_KEY, f"{endpoint_field} count", 1)
        pipe.execute()

    def read(self) -> CallStats:
        pipe = self._redis.pipeline(transaction=False)
        pipe.hgetall(CALLS_KEY)
        pipe.hgetall(LATENCY_KEY)
        calls, latencies = pipe.execute()
        stats = CallStats()
        for raw_field, value in calls.items():
            method, endpoint, status = raw_field.decode().split(_SEPARATOR)
            stats.calls[(method, endpoint, status)] = int(value)
        for raw_field, value in latencies.items():
            method, endpoint, part = raw_field.decode().split(_SEPARATOR)
            latency = stats.latency[(method, endpoint)]
            if part == "sum":
                latency.total_seconds = float(value)
            elif part == "count":
                latency.count = int(value)
            else:
                latency.buckets[int(part.removeprefix("bucket"))] = int(value)
        return stats


@functools.cache
def get_call_store() -> CallStore:
    if settings.REDIS_URL:
        import redis

        return RedisCallStore(redis.Redis.from_url(settings.REDIS_URL, **settings.REDIS_SOCKET_OPTIONS))
    return LocalCallStore()


def record_cloudflare_call(method: str, endpoint: str, status: int | None, seconds: float) -> None:
    """The Cloudflare client's `on_call` hook (cloudflare.client.CallObserver)."""
    get_call_store().record(method, endpoint, status, seconds)
