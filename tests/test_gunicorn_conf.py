"""gunicorn.conf.py: its timeout is above the web deadline, and threads keep one slow call from blocking others."""

from __future__ import annotations

import runpy
from pathlib import Path

from django.conf import settings
from gunicorn.config import Config

CONF = Path(__file__).resolve().parent.parent / "gunicorn.conf.py"


def load(monkeypatch, **environ) -> Config:
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    config = Config()
    for name, value in runpy.run_path(str(CONF)).items():
        if name in config.settings:
            config.set(name, value)
    return config


def test_the_timeout_is_well_above_the_web_deadline_and_workers_have_threads(monkeypatch):
    config = load(monkeypatch)
    deadline = settings.CLOUDFLARE_WEB_DEADLINE

    assert config.timeout >= 2 * deadline
    assert config.graceful_timeout >= deadline
    assert config.worker_class_str == "gthread"
    assert config.threads > 1


def test_an_operator_sizes_it_from_the_environment(monkeypatch):
    config = load(monkeypatch, GUNICORN_WORKERS="5", GUNICORN_THREADS="16", GUNICORN_TIMEOUT="45")

    assert (config.workers, config.threads, config.timeout) == (5, 16, 45)


def test_the_image_and_compose_use_it():
    root = CONF.parent
    assert '"--config", "gunicorn.conf.py"' in (root / "Dockerfile").read_text()
    assert "gunicorn portal.wsgi:application --config gunicorn.conf.py" in (root / "docker-compose.yml").read_text()
