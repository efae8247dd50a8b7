"""The project package. Importing it loads the settings (through the Celery app), so every program that runs
the portal (manage.py, gunicorn, celery) passes through here: a setting that stops start-up ends the process
with its one-line message on stderr, not a traceback an operator has to read from the bottom."""

import sys

from django.core.exceptions import ImproperlyConfigured

try:
    from portal.celery import app as celery_app
except ImproperlyConfigured as refusal:
    sys.exit(f"ImproperlyConfigured: {refusal}")

__all__ = ("celery_app",)
