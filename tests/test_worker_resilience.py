"""A real Celery worker outlives a Redis restart (issue 9): it reconnects and consumes again, with no supervisor.

The worker runs as a subprocess against a redis-server this test starts on a free port and kills; its database is
a SQLite file, so the test reads the effect of a task (the firewall sync's FirewallState row) from that file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import services_required

ROOT = Path(__file__).resolve().parents[1]
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
ZONE_ID = "0" * 32  # the emulator's zone with DEBUG and no token
SYNC_TASK = "certificates.tasks.sync_firewall"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(condition: Callable[[], object], *, seconds: float, what: str) -> object:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


@contextlib.contextmanager
def redis_server(port: int) -> Iterator[subprocess.Popen]:
    """An empty, non-persistent Redis on `port`, killed (SIGKILL, as in a crash) on exit."""
    process = subprocess.Popen(
        [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: _answers(port), seconds=10, what=f"redis-server on port {port}")
        yield process
    finally:
        process.kill()
        process.wait(timeout=10)


def _answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5) as connection:
        connection.sendall(b"PING\r\n")
        return connection.recv(16).startswith(b"+PONG")
    return False


def portal_environment(tmp_path: Path, redis_url: str) -> dict[str, str]:
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("CLOUDFLARE_", "DATABASE_", "REDIS_", "EMAIL_", "CELERY_", "SECRET_KEY"))
    }
    environment.update(
        {
            "DEBUG": "true",
            "REDIS_URL": redis_url,
            "PORTAL_VAR_DIR": str(tmp_path),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'portal.sqlite3'}",
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return environment


@contextlib.contextmanager
def celery_worker(environment: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "portal", "worker", "--loglevel", "INFO", "--concurrency", "2"],
            cwd=ROOT,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def send_sync(redis_url: str, **options: object) -> None:
    from celery import Celery

    sender = Celery("resilience-test", broker=redis_url)
    try:
        sender.send_task(SYNC_TASK, args=[ZONE_ID], **options)
    finally:
        sender.close()


def last_synced_at(database: Path) -> str | None:
    with contextlib.closing(sqlite3.connect(database)) as connection:
        row = connection.execute(
            "SELECT last_synced_at FROM certificates_firewallstate WHERE zone_id = ?", (ZONE_ID,)
        ).fetchone()
    return row[0] if row else None


def worker_healthcheck(environment: dict[str, str]) -> subprocess.CompletedProcess:
    """docker-compose.yml's healthcheck of the worker (`python manage.py readiness --for worker`), run here as the
    container would run it, with this Python."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    kind, program, *arguments = compose["services"]["worker"]["healthcheck"]["test"]
    assert (kind, program) == ("CMD", "python")
    return subprocess.run(
        [sys.executable, *arguments], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def redis_binary() -> str:
    if not Path(REDIS_SERVER).exists():
        if services_required():
            pytest.fail("redis-server is required (REQUIRE_SERVICES=1) but is not installed")
        pytest.skip("redis-server is not installed: this test starts and kills its own Redis")
    return REDIS_SERVER


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_it_consumes_again_after_redis_is_killed_and_restarted(tmp_path, redis_binary):
    port = free_port()
    redis_url = f"redis://127.0.0.1:{port}/0"
    environment = portal_environment(tmp_path, redis_url)
    database = tmp_path / "portal.sqlite3"
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=environment, check=True, timeout=120
    )
    log = tmp_path / "worker.log"

    def synced_after(previous: str | None) -> Callable[[], object]:
        return lambda: (value := last_synced_at(database)) and value != previous and value

    with celery_worker(environment, log) as worker:
        with redis_server(port):
            send_sync(redis_url)
            first = wait_for(synced_after(None), seconds=60, what="the first sync")
            # Under load: a message the worker holds unacknowledged (an ETA) when Redis dies. Celery 5.7.0 died here
            # restoring it ("'NoneType' object has no attribute 'hostname'").
            send_sync(redis_url, countdown=600)
            wait_for(lambda: log.read_text().count("] received") >= 2, seconds=30, what="the ETA task")
        wait_for(lambda: "Connection to broker lost" in log.read_text(), seconds=30, what="the worker to notice")
        time.sleep(2)  # a few of the worker's reconnection attempts fail before Redis is back
        assert worker.poll() is None, log.read_text()[-4000:]

        with redis_server(port):
            send_sync(redis_url)
            wait_for(synced_after(first), seconds=90, what="a sync after Redis came back")
            assert worker.poll() is None, log.read_text()[-4000:]
            health = worker_healthcheck(environment)
            assert health.returncode == 0, health.stdout + health.stderr
            assert '"broker": {"status": "ok"}' in health.stdout

    assert "Unrecoverable error" not in log.read_text()
