"""certificates.enqueue queues tasks by name: each name must be a task the app registers at start-up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from certificates import enqueue, tasks

ROOT = Path(__file__).resolve().parents[2]
QUEUED_BY_NAME = [enqueue.SYNC_FIREWALL, enqueue.CONFIRM_REVOCATION, enqueue.RECONCILE_CERTIFICATE]


@pytest.mark.parametrize("name", QUEUED_BY_NAME)
def test_it_names_a_task_of_certificates_tasks(name):
    task = getattr(tasks, name.removeprefix("certificates.tasks."))

    assert enqueue._task(name).name == task.name == name


def test_an_unknown_name_fails_loudly():
    with pytest.raises(KeyError):
        enqueue._task("certificates.tasks.no_such_task")


def test_the_tasks_are_registered_once_django_is_set_up():
    """A web process never imports certificates.tasks itself: the app config does, so the names resolve."""
    code = (
        "import django; django.setup(); from celery import current_app; "
        f"print(all(name in current_app.tasks for name in {QUEUED_BY_NAME!r}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "DEBUG": "true"},
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"
