"""docker-compose.yml supervises the portal's processes: restart policies, and healthchecks built on /readyz's checks
that pass on a working portal and fail on the fault of their own container."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from django.core.management import call_command
from django.test import Client

from tests.test_health import beat_and_worker_alive, record_poll, zone_synced

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def services() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def manage_py_arguments(service: dict) -> list[str]:
    """The `python manage.py ...` arguments of an exec-form healthcheck (no shell: nothing to quote or expand)."""
    kind, *command = service["healthcheck"]["test"]
    assert kind == "CMD"
    assert command[:2] == ["python", "manage.py"]
    return command[2:]


@pytest.mark.parametrize("name", ["web", "worker", "beat"])
def test_it_restarts_each_portal_process(services, name):
    assert services[name].get("restart") in ("unless-stopped", "always")


@pytest.mark.parametrize(("name", "scope"), [("web", "web"), ("worker", "worker"), ("beat", "beat")])
def test_each_portal_process_is_checked_with_the_readiness_checks_of_its_own_part(services, name, scope):
    arguments = manage_py_arguments(services[name])

    assert arguments[0] == "readiness"
    assert arguments[arguments.index("--for") + 1] == scope


def test_web_is_checked_through_its_own_web_server(services):
    arguments = manage_py_arguments(services["web"])

    # gunicorn's address in the container (gunicorn.conf.py binds 0.0.0.0:8000).
    assert arguments[arguments.index("--http") + 1] == "127.0.0.1:8000"
    assert "--http" not in manage_py_arguments(services["worker"])  # a worker's container serves no http


@pytest.mark.parametrize("name", ["web", "worker", "beat"])
def test_a_healthcheck_has_time_to_start_the_command_and_to_wait_for_its_timeouts(services, name):
    check = services[name]["healthcheck"]
    # Django's start-up takes a few seconds; the broker check waits at most 2 s and --http at most 10 s.
    assert seconds(check["timeout"]) >= 20
    assert seconds(check["start_period"]) >= 60


def seconds(value: str) -> int:
    assert value.endswith("s")
    return int(value[:-1])


def run_healthcheck(service: dict, capsys) -> tuple[int, str]:
    arguments = manage_py_arguments(service)
    arguments = arguments[: arguments.index("--http")] if "--http" in arguments else arguments
    try:
        call_command(*arguments)
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    except Exception:  # CommandError: call_command raises it instead of exiting
        code = 1
    return code, capsys.readouterr().out


@pytest.mark.django_db
def test_the_worker_and_beat_healthchecks_pass_while_both_work(services, capsys):
    zone_synced(beat_and_worker_alive())

    assert run_healthcheck(services["worker"], capsys)[0] == 0
    assert run_healthcheck(services["beat"], capsys)[0] == 0


@pytest.mark.django_db
def test_a_stopped_worker_fails_the_workers_healthcheck_only(services, capsys, settings):
    limit = settings.READY_POLL_MAX_AGE_SECONDS
    record_poll(queued=1, started=limit + 1, succeeded=limit + 1)  # beat queues, nobody starts

    code, output = run_healthcheck(services["worker"], capsys)
    assert code != 0
    assert '"failing": ["worker"]' in output
    assert run_healthcheck(services["beat"], capsys)[0] == 0


@pytest.mark.django_db
def test_a_stopped_beat_fails_beats_healthcheck_only(services, capsys, settings):
    old = settings.READY_BEAT_MAX_AGE_SECONDS + 1
    record_poll(queued=old, started=old - 1, succeeded=old - 1)  # the worker ran beat's last poll, then idled

    code, output = run_healthcheck(services["beat"], capsys)
    assert code != 0
    assert '"failing": ["beat"]' in output
    assert run_healthcheck(services["worker"], capsys)[0] == 0


@pytest.mark.django_db
def test_the_web_healthcheck_asks_what_web_needs_only(services, capsys):
    # Neither beat nor any worker has ever run: web still serves, so its container is healthy.
    assert run_healthcheck(services["web"], capsys)[0] == 0
    assert Client(HTTP_HOST="localhost").get("/readyz").status_code == 503


def test_every_portal_process_reads_the_same_settings(services):
    # Secrets such as PORTAL_CA_ENCRYPTION_KEY come from .env: web (which signs certificates) and the worker (which
    # signs CRLs) must both get them, and beat the same configuration as the worker it queues for.
    settings_of = {
        name: (services[name]["env_file"], services[name]["environment"]) for name in ("web", "worker", "beat")
    }
    assert settings_of["web"] == settings_of["worker"] == settings_of["beat"]
    assert [entry["path"] for entry in settings_of["web"][0]] == [".env"]
