"""The Celery app: broker from REDIS_URL, or the filesystem transport under var/ with no Redis.

It also records what the Celery processes do (certificates.services.task_runs): beat's sends, and each task's start,
success, failure and retry in a worker. Readiness and the metrics read those rows from any process.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from celery import Celery
from celery.signals import after_task_publish, beat_init, task_failure, task_prerun, task_retry, task_success

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

logger = logging.getLogger(__name__)

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def _make_queue_folders() -> None:
    options = app.conf.broker_transport_options or {}
    for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
        if options.get(key):
            Path(options[key]).mkdir(parents=True, exist_ok=True)


_make_queue_folders()


# -- task runs (portal/health.py, portal/metrics.py) ----------------------------------------------------------------

# Only beat's sends are recorded: they are the scheduler's sign of life. A web request that queues a sync is not.
_this_process = {"is_beat": False}


def _quietly(what: str, task: str, record: Callable[[], None]) -> None:
    """Bookkeeping must never fail or delay a task's own outcome: a database error is logged and forgotten."""
    try:
        record()
    except Exception:  # the database may be down; the task's own error, if any, is what matters
        logger.warning("could not record that task %s %s", task, what, exc_info=True)


def _now() -> datetime:
    from django.utils import timezone

    return timezone.now()


@beat_init.connect
def _remember_this_is_beat(**kwargs: Any) -> None:
    _this_process["is_beat"] = True


@after_task_publish.connect
def _record_queued(sender: str | None = None, **kwargs: Any) -> None:
    if not _this_process["is_beat"] or not sender:
        return
    from certificates.services import task_runs

    _quietly("queued", sender, lambda: task_runs.task_run_queued(task=sender, now=_now()))


@task_prerun.connect
def _record_started(sender: Any = None, **kwargs: Any) -> None:
    from certificates.services import task_runs

    _quietly("started", sender.name, lambda: task_runs.task_run_started(task=sender.name, now=_now()))


@task_success.connect
def _record_succeeded(sender: Any = None, **kwargs: Any) -> None:
    from certificates.services import task_runs

    _quietly("succeeded", sender.name, lambda: task_runs.task_run_succeeded(task=sender.name, now=_now()))


@task_failure.connect
def _record_failed(sender: Any = None, exception: BaseException | None = None, **kwargs: Any) -> None:
    from certificates.services import task_runs

    error = exception or Exception("no exception given")
    _quietly("failed", sender.name, lambda: task_runs.task_run_failed(task=sender.name, now=_now(), error=error))


@task_retry.connect
def _record_retried(sender: Any = None, **kwargs: Any) -> None:
    from certificates.services import task_runs

    _quietly("retried", sender.name, lambda: task_runs.task_run_retried(task=sender.name))
