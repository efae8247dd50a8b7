"""The processes of a chaos run: redis-server, the emulator, gunicorn, a Celery worker and beat, all on 127.0.0.1.

Every process is started in its own session (process group) with its output in a log file under the run's
directory, and is stopped through that group: `Stack.stop_all()` in a `finally` leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
ZONE_ID = "0123456789abcdef" * 2
PORTAL_TOKEN = "chaos-portal-token"  # the portal's Cloudflare token; the emulator accepts any
API_HOST = "api.example.com"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(condition: Callable[[], object], *, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise RuntimeError(f"timed out after {seconds} s waiting for {what}")


def answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


class Stack:
    def __init__(self, run_dir: Path, *, database_url: str) -> None:
        self.run_dir = run_dir
        self.redis_port, self.emulator_port, self.web_port = free_port(), free_port(), free_port()
        self.state_file = run_dir / "emulator-state.json"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.database_url = database_url
        self.portal_overrides: dict[str, str] = {}

    # --- environment -----------------------------------------------------------------------------------

    @property
    def emulator_url(self) -> str:
        return f"http://127.0.0.1:{self.emulator_port}"

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def portal_env(self) -> dict[str, str]:
        """Production-like settings (DEBUG off, PostgreSQL, Redis, a token) with short beat intervals."""
        keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")
        env = {name: os.environ[name] for name in keep if name in os.environ}
        env.update(
            DJANGO_SETTINGS_MODULE="portal.settings",
            PYTHONUNBUFFERED="1",
            DEBUG="false",
            SECRET_KEY="chaos-run-secret-key-" + "x" * 40,
            ALLOWED_HOSTS="127.0.0.1,localhost",
            EMAIL_CONSOLE="true",
            DATABASE_URL=self.database_url,
            REDIS_URL=f"redis://127.0.0.1:{self.redis_port}/0",
            CLOUDFLARE_API_TOKEN=PORTAL_TOKEN,
            CLOUDFLARE_API_BASE_URL=f"{self.emulator_url}/client/v4",
            CLOUDFLARE_ZONE_ID=ZONE_ID,
            PORTAL_API_HOSTNAMES=API_HOST,
            CLOUDFLARE_PLAN="enterprise",
            PORTAL_VAR_DIR=str(self.run_dir / "var"),
            CERTIFICATE_POLL_SECONDS="5",
            FIREWALL_SYNC_SECONDS="20",
            SWEEP_STUCK_SECONDS="10",
            FIREWALL_SYNC_REQUESTED_SECONDS="10",
            RECONCILE_SECONDS="60",
            FIREWALL_SYNC_DEBOUNCE_SECONDS="1",
            CERTIFICATE_ISSUE_RATE_LIMIT="1000/h",
            CERTIFICATE_REVOKE_RATE_LIMIT="1010/h",
            GUNICORN_BIND=f"127.0.0.1:{self.web_port}",
            GUNICORN_WORKERS="2",
            LOG_LEVEL="INFO",
        )
        env.update(self.portal_overrides)
        return env

    # --- processes -------------------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = open(self.run_dir / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it; closed with the run
        process = subprocess.Popen(  # noqa: S603 - fixed argv built here
            argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.processes[name] = process
        return process

    def send_signal(self, name: str, sig: int) -> None:
        process = self.processes.get(name)
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)

    def stop(self, name: str, *, sig: int = signal.SIGTERM, grace: float = 15.0) -> None:
        process = self.processes.pop(name, None)
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGCONT)  # a frozen process cannot exit
                os.killpg(process.pid, sig)
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        # The group may hold children (celery's pool, gunicorn's workers) that outlive their parent.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)

    def alive(self, name: str) -> bool:
        process = self.processes.get(name)
        return process is not None and process.poll() is None

    def start_redis(self) -> None:
        argv = [REDIS_SERVER, "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self._spawn("redis", argv)
        wait_for(lambda: answers(self.redis_port), seconds=15, what="redis-server")

    def start_emulator(self, *, rate_limit: int = 1200, rate_window: float = 300.0) -> None:
        argv = [
            sys.executable,
            "-m",
            "cloudflare_emulator",
            "--port",
            str(self.emulator_port),
            "--state",
            str(self.state_file),
            "--revocation-delay",
            "5",
            "--reactivation-delay",
            "5",
            "--rate-limit",
            str(rate_limit),
            "--rate-window",
            str(rate_window),
        ]
        self._spawn("emulator", argv)
        wait_for(lambda: answers(self.emulator_port), seconds=30, what="the emulator")

    def manage(self, *arguments: str) -> str:
        result = subprocess.run(  # noqa: S603 - fixed argv built here
            [sys.executable, "manage.py", *arguments],
            cwd=ROOT,
            env=self.portal_env(),
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        return result.stdout

    def start_web(self) -> None:
        argv = [str(VENV_BIN / "gunicorn"), "portal.wsgi:application", "--config", "gunicorn.conf.py"]
        self._spawn("web", argv, self.portal_env())
        wait_for(lambda: answers(self.web_port), seconds=60, what="gunicorn")

    def start_worker(self) -> None:
        argv = [str(VENV_BIN / "celery"), "-A", "portal", "worker", "--loglevel", "INFO", "--concurrency", "2"]
        self._spawn("worker", [*argv, "-n", "chaos@%h"], self.portal_env())

    def start_beat(self) -> None:
        schedule = str(self.run_dir / "celerybeat-schedule")
        argv = [str(VENV_BIN / "celery"), "-A", "portal", "beat", "--loglevel", "INFO", "--schedule", schedule]
        self._spawn("beat", argv, self.portal_env())

    def start_portal(self) -> None:
        self.start_web()
        self.start_worker()
        self.start_beat()

    def stop_portal(self) -> None:
        for name in ("beat", "worker", "web"):
            self.stop(name)

    def stop_all(self) -> None:
        for name in ("beat", "worker", "web", "emulator", "redis"):
            self.stop(name, grace=10.0)
