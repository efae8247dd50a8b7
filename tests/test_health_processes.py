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
    log = (tmp_path / "beat.log").open("w")
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "portal", "beat", "--schedule", str(tmp_path / "beat-schedule")],
        cwd=ROOT,
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


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
                    lambda: (
                        readiness(environment, "worker")["status"] == "ok"
                        and readiness(environment, "beat")["status"] == "ok"
                    ),
                    seconds=60,
                    what="the worker and beat to pass their healthchecks",
                )
                assert readiness(environment, "all")["checks"]["poll"]["status"] == "ok"
            stopped_at = time.monotonic()

            answer = wait_for(
                lambda: (found := readiness(environment, "all"))["checks"]["worker"]["status"] == "failing" and found,
                seconds=30,
                what="readiness to notice the stopped worker",
            )
            noticed_after = time.monotonic() - stopped_at

            assert isinstance(answer, dict)
            assert {"worker", "poll"} <= set(answer["failing"])
            assert answer["checks"]["beat"]["status"] == "ok"
            # The threshold, a poll period for beat to queue one nobody takes, and a readiness command's start-up.
            assert noticed_after <= MAX_AGE_SECONDS + POLL_SECONDS + 10
            assert readiness(environment, "beat")["status"] == "ok"
            assert readiness(environment, "worker")["status"] == "failing"
        finally:
            beat.terminate()
            beat.wait(timeout=20)
