"""System checks of the portal's own settings (`manage.py check --deploy`)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core import checks

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


@checks.register(checks.Tags.security, deploy=True)
def check_base_url(app_configs: Any, **kwargs: Any) -> list[checks.CheckMessage]:
    """Emails (confirmations, revocations, expiry reminders) link to PORTAL_BASE_URL."""
    if urlsplit(settings.PORTAL_BASE_URL).hostname not in LOCAL_HOSTS:
        return []
    return [
        checks.Warning(
            f"PORTAL_BASE_URL is {settings.PORTAL_BASE_URL}: links in the portal's emails point to this machine.",
            hint="Set PORTAL_BASE_URL to the address users reach the portal at, e.g. https://portal.example.com.",
            id="portal.W001",
        )
    ]
