"""What the Celery processes did with each task (TaskRun rows): written by portal/celery.py's signal receivers, read
by readiness (portal/health.py) and the metrics (portal/metrics.py).

Each event is one UPDATE with counters incremented in the database (F expressions), so workers running the same task
at once never lose a count; the row is made the first time a task is seen.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F

from certificates.models import TaskRun

ERROR_SUMMARY_CHARS = 500


def task_run_queued(*, task: str, now: datetime) -> None:
    """Beat sent the task to the broker."""
    _record(task, last_queued_at=now)


def task_run_started(*, task: str, now: datetime) -> None:
    _record(task, last_started_at=now)


def task_run_succeeded(*, task: str, now: datetime) -> None:
    _record(task, last_succeeded_at=now, succeeded=F("succeeded") + 1)


def task_run_failed(*, task: str, now: datetime, error: BaseException) -> None:
    _record(task, last_failed_at=now, failed=F("failed") + 1, last_error=error_summary(error))


def task_run_retried(*, task: str) -> None:
    _record(task, retried=F("retried") + 1)


def error_summary(error: BaseException) -> str:
    """The class and the start of the message: enough to tell a timeout from a refusal in the admin or a shell."""
    return f"{type(error).__name__}: {error}"[:ERROR_SUMMARY_CHARS]


def _record(task: str, **changes: Any) -> None:
    if TaskRun.objects.filter(task=task).update(**changes):
        return
    try:
        # A savepoint: a worker that made the row first (the unique task name) leaves this transaction usable.
        with transaction.atomic():
            TaskRun.objects.create(task=task)
    except IntegrityError:
        pass
    TaskRun.objects.filter(task=task).update(**changes)
