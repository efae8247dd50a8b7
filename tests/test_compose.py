"""docker-compose.yml supervises the portal's processes: restart policies and healthchecks that work."""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
VAR = "/app/var"


@pytest.fixture(scope="module")
def services() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


@pytest.mark.parametrize("name", ["web", "worker", "beat"])
def test_it_restarts_each_portal_process(services, name):
    assert services[name].get("restart") in ("unless-stopped", "always")


def test_it_checks_the_worker_by_pinging_its_own_node(services):
    kind, command = services["worker"]["healthcheck"]["test"]
    assert kind == "CMD-SHELL"
    words = shlex.split(command)
    assert words[:4] == ["celery", "-A", "portal", "inspect"]
    assert "ping" in words
    # Its own node only ($$ is compose's escape for a literal $, read by the container's shell).
    assert words[words.index("--destination") + 1] == "celery@$$HOSTNAME"


def run_beat_healthcheck(services, var_dir: Path) -> int:
    kind, command = services["beat"]["healthcheck"]["test"]
    assert kind == "CMD-SHELL"
    return subprocess.run(["sh", "-c", command.replace(VAR, str(var_dir))], check=False, timeout=30).returncode


def test_the_beat_healthcheck_reads_the_schedule_file_beat_writes(services):
    command = shlex.split(services["beat"]["command"])
    schedule = Path(command[command.index("--schedule") + 1])
    assert str(schedule.parent) == VAR
    assert VAR in services["beat"]["healthcheck"]["test"][1]
    assert schedule.name in services["beat"]["healthcheck"]["test"][1]


def test_the_beat_healthcheck_passes_on_a_fresh_schedule_and_fails_on_a_stale_or_missing_one(services, tmp_path):
    assert run_beat_healthcheck(services, tmp_path) != 0  # beat never wrote it
    schedule = tmp_path / "celerybeat-schedule"
    schedule.write_bytes(b"")
    assert run_beat_healthcheck(services, tmp_path) == 0
    five_minutes_ago = time.time() - 300
    os.utime(schedule, (five_minutes_ago, five_minutes_ago))
    assert run_beat_healthcheck(services, tmp_path) != 0


def test_beat_writes_its_schedule_after_every_task_it_sends(settings):
    # What makes the file's age a sign of life (docker-compose.yml, beat's healthcheck).
    assert settings.CELERY_BEAT_SYNC_EVERY == 1


def test_every_portal_process_reads_the_same_settings(services):
    # Secrets such as PORTAL_CA_ENCRYPTION_KEY come from .env: web (which signs certificates) and the worker (which
    # signs CRLs) must both get them, and beat the same configuration as the worker it queues for.
    settings_of = {
        name: (services[name]["env_file"], services[name]["environment"]) for name in ("web", "worker", "beat")
    }
    assert settings_of["web"] == settings_of["worker"] == settings_of["beat"]
    assert [entry["path"] for entry in settings_of["web"][0]] == [".env"]
