"""Fault injection: queue failures for the next matching requests.

Each fault applies to the next `times` requests whose method and path match (`path` is a regular
expression searched in the path below `/client/v4`). Latency faults are drawn separately from outcome
faults, so a slow answer and an error can be combined.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any

KINDS = ("rate_limit", "server_error", "latency", "create_commits_then_fails", "connect_error")
CREATE_CLIENT_CERTIFICATE = re.compile(r"^/zones/[^/]+/client_certificates/?$")


@dataclass
class Fault:
    kind: str
    remaining: int
    method: str | None = None
    path: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method.upper() != method.upper():
            return False
        if self.kind == "create_commits_then_fails" and not (
            method.upper() == "POST" and CREATE_CLIENT_CERTIFICATE.match(path)
        ):
            return False
        return self.path is None or re.search(self.path, path) is not None

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "remaining": self.remaining, "method": self.method, "path": self.path, **self.params}


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: list[Fault] = []

    def rate_limit(
        self, times: int = 1, retry_after: int = 1, method: str | None = None, path: str | None = None
    ) -> None:
        """Answer 429 with `Retry-After: retry_after` (without tripping the real limiter)."""
        self._add(Fault("rate_limit", times, method, path, {"retry_after": int(retry_after)}))

    def server_error(
        self,
        times: int = 1,
        status: int = 500,
        method: str | None = None,
        path: str | None = None,
        html: bool = False,
        empty: bool = False,
    ) -> None:
        """Answer `status` with an error envelope, an HTML page (as Cloudflare's edge does) or no body."""
        if not 500 <= status <= 599:
            raise ValueError("server_error status must be 5xx")
        self._add(Fault("server_error", times, method, path, {"status": int(status), "html": html, "empty": empty}))

    def latency(self, seconds: float, times: int = 1, method: str | None = None, path: str | None = None) -> None:
        """Sleep before answering. In-process, a delay beyond the client's read timeout is a read timeout."""
        self._add(Fault("latency", times, method, path, {"seconds": float(seconds)}))

    def create_commits_then_fails(
        self,
        times: int = 1,
        mode: str = "timeout",
        sleep: float = 5.0,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        """The client-certificate create is committed, then the answer is lost (timeout) or a 500."""
        if mode not in ("timeout", "server_error"):
            raise ValueError("mode must be 'timeout' or 'server_error'")
        self._add(Fault("create_commits_then_fails", times, method, path, {"mode": mode, "sleep": float(sleep)}))

    def connect_error(self, times: int = 1, method: str | None = None, path: str | None = None) -> None:
        """In-process: the transport raises ConnectTimeout; nothing reaches the API (not logged, not counted)."""
        self._add(Fault("connect_error", times, method, path))

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()

    def pending(self) -> list[dict[str, Any]]:
        with self._lock:
            return [fault.describe() for fault in self._queue]

    def add_from_json(self, body: dict[str, Any]) -> None:
        """The admin route's entry: `{"kind": ..., same keyword parameters}`."""
        params = dict(body)
        kind = params.pop("kind", None)
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}")
        getattr(self, str(kind))(**params)

    def take(self, kinds: tuple[str, ...], method: str, path: str) -> Fault | None:
        """Consume one use of the first queued fault of these kinds that matches the request."""
        with self._lock:
            for fault in self._queue:
                if fault.kind in kinds and fault.matches(method, path):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._queue.remove(fault)
                    return fault
        return None

    def _add(self, fault: Fault) -> None:
        if fault.remaining < 1:
            raise ValueError("times must be at least 1")
        if fault.path is not None:
            re.compile(fault.path)
        with self._lock:
            self._queue.append(fault)
