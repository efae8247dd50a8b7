"""A burst of 5,000 queued operations never sends more than 1,200 calls to Cloudflare in any 300 s window.

Four workers, each with its own client, share the portal's call budget (the LocalBudget here; RedisBudget
runs the same sliding window in Redis across processes, see tests/cloudflare/test_budget.py). Time is
simulated: the emulator, the budget and the clients' sleeps share one fake clock, so 5,000 operations
that take about 21 minutes of Cloudflare time run in seconds. Calls are counted from the emulator's log.

Run: .venv/bin/python bench/bench_burst.py
"""

from __future__ import annotations

import sys
from collections import deque
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import header, write_result

from cloudflare.budget import LocalBudget
from cloudflare.client import CloudflareClient
from cloudflare_emulator import Emulator
from cloudflare_emulator.wsgi_transport import mount_wsgi_app
from tests.emulator.conftest import FakeClock

OPERATIONS = 5000
WORKERS = 4
LIMIT, WINDOW = 1200, 300.0
ZONE = "0" * 32
BASE = "http://emulator.bench/client/v4"


def max_in_window(times: list[float], window: float) -> int:
    recent: deque[float] = deque()
    best = 0
    for at in times:
        recent.append(at)
        while recent[0] <= at - window:
            recent.popleft()
        best = max(best, len(recent))
    return best


def main() -> None:
    clock = FakeClock(1_800_000_000.0)
    emulator = Emulator(clock=clock, rate_limit=LIMIT, rate_window=WINDOW)
    budget = LocalBudget(limit=LIMIT, window=WINDOW, clock=clock)
    clients = []
    for _ in range(WORKERS):
        import requests

        session = requests.Session()
        mount_wsgi_app(session, BASE, emulator.wsgi_app)
        clients.append(
            CloudflareClient(
                api_token="bench",
                base_url=BASE,
                session=session,
                budget=budget,
                sleep=clock.advance,
                max_budget_wait=None,
            )
        )
    operations = [
        lambda c: c.get_entrypoint(ZONE),
        lambda c: c.list_client_certificates_page(ZONE, per_page=5),
        lambda c: c.get_hostname_associations(ZONE),
    ]
    for n in range(OPERATIONS):
        operations[n % len(operations)](clients[n % WORKERS])
        clock.advance(0.01)  # the work between two calls

    log = emulator.request_log
    times = sorted(entry.at for entry in log)
    throttled = sum(1 for entry in log if entry.status == 429)
    lines = [
        f"operations: {OPERATIONS} by {WORKERS} workers sharing one budget of {LIMIT} calls per {WINDOW:.0f} s",
        f"calls that reached Cloudflare: {len(log)}",
        f"most calls in any {WINDOW:.0f} s window: {max_in_window(times, WINDOW)} (limit {LIMIT})",
        f"429 answers: {throttled}",
        f"simulated duration: {(times[-1] - times[0]) / 60:.1f} minutes",
    ]
    write_result(
        "burst.txt",
        header("Burst: calls per 300 s window, counted from the emulator's log", "python bench/bench_burst.py")
        + "\n".join(lines)
        + "\n",
    )


if __name__ == "__main__":
    main()
