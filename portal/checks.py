"""System checks of the portal's own settings (`manage.py check --deploy`)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core import checks
from django.db import DatabaseError

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


@checks.register(checks.Tags.security, deploy=True)
def check_ca_encryption_key(app_configs: Any, **kwargs: Any) -> list[checks.CheckMessage]:
    """A portal CA's key is stored encrypted with PORTAL_CA_ENCRYPTION_KEY: without it nothing can be signed."""
    if settings.PORTAL_CA_ENCRYPTION_KEY:
        return []
    from certificates.models import CertificateAuthority  # not at the top: checks load before the apps are ready

    try:
        held = CertificateAuthority.objects.exclude(status=CertificateAuthority.Status.REMOVED).count()
    except DatabaseError:
        return []  # no database yet (before migrate, or none reachable): nothing to say about its CAs
    if not held:
        return []
    return [
        checks.Warning(
            f"{held} portal CA{'s' if held != 1 else ''} exist{'s' if held == 1 else ''}, and "
            "PORTAL_CA_ENCRYPTION_KEY is not set: their keys cannot be unlocked, so issuance with them and their "
            "CRLs fail.",
            hint=(
                "Set PORTAL_CA_ENCRYPTION_KEY_FILE (or PORTAL_CA_ENCRYPTION_KEY) to the key they were stored with; "
                'a key made now cannot unlock them (README, "Issuers").'
            ),
            id="portal.W002",
        )
    ]
