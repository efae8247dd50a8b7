"""Readiness with real Celery processes (what `docker compose up` runs, without Docker): a worker and beat against a
redis-server this test starts, on a SQLite file. Both pass their healthchecks; once the worker stops, the readiness
checks turn red within READY_POLL_MAX_AGE_SECONDS while beat's stay green.

The schedule is shortened (a poll every second, thresholds of a few seconds) so that the test takes seconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_worker_resilience import celery_worker, free_port, portal_environment, redis_server, wait_for

ROOT = Path(__file__).resolve().parents[1]
POLL_SECONDS = 1
MAX_AGE_SECONDS = 4


def readiness(environment: dict[str, str], scope: str) -> dict:
    result = subprocess.run(
        [sys.executable, "manage.py", "readiness", "--for", scope],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    answer = json.loads(result.stdout)
    assert (result.returncode == 0) == (answer["status"] == "ok"), result.stderr
    return answer


def start_beat(environment: dict[str, str], tmp_path: Path) -> subprocess.Popen:
    with (tmp_path / "beat.log").open("w") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "portal", "beat", "--schedule", str(tmp_path / "beat-schedule")],
            cwd=ROOT,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def polled_and_queued(answer: dict) -> bool:
    return all(answer["checks"][name]["status"] == "ok" for name in ("beat", "worker", "poll"))


def first_failing_worker_check(environment: dict[str, str]) -> tuple[dict, float]:
    """Ask readiness until the worker check fails: that answer, and the longest a readiness command took."""
    deadline = time.monotonic() + 90
    longest = 0.0
    while time.monotonic() < deadline:
        started = time.monotonic()
        answer = readiness(environment, "all")
        longest = max(longest, time.monotonic() - started)
        if answer["checks"]["worker"]["status"] == "failing":
            return answer, longest
    raise AssertionError("readiness never noticed the stopped worker")


@pytest.mark.slow
def test_a_stopped_worker_turns_readiness_red_within_the_threshold(tmp_path):
    port = free_port()
    with redis_server(port):
        environment = portal_environment(tmp_path, f"redis://127.0.0.1:{port}/0")
        environment.update(
            CERTIFICATE_POLL_SECONDS=str(POLL_SECONDS),
            READY_POLL_MAX_AGE_SECONDS=str(MAX_AGE_SECONDS),
            READY_BEAT_MAX_AGE_SECONDS=str(MAX_AGE_SECONDS),
        )
        migrate = subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=environment, capture_output=True
        )
        assert migrate.returncode == 0, migrate.stderr
        beat = start_beat(environment, tmp_path)
        try:
            with celery_worker(environment, tmp_path / "worker.log"):
                wait_for(
                    lambda: polled_and_queued(readiness(environment, "all")),
                    seconds=120,
                    what="beat to queue a poll and the worker to run it",
                )
                assert readiness(environment, "worker")["status"] == "ok"
                assert readiness(environment, "beat")["status"] == "ok"
            answer, probe_seconds = first_failing_worker_check(environment)

            assert {"worker", "poll"} <= set(answer["failing"])
            assert answer["checks"]["beat"]["status"] == "ok"
            # Red as soon as the threshold passed: the last start is older than it by at most a poll period (beat
            # queues one the stopped worker never takes) and the time one check takes to start (on a busy machine
            # a readiness command takes seconds), plus rounding.
            age = answer["checks"]["worker"]["age_seconds"]
            assert MAX_AGE_SECONDS < age <= MAX_AGE_SECONDS + POLL_SECONDS + probe_seconds + 1
            assert readiness(environment, "beat")["status"] == "ok"
            assert readiness(environment, "worker")["status"] == "failing"
        finally:
            beat.terminate()
            beat.wait(timeout=20)
