"""Development stand-ins (the Cloudflare emulator, console email) never run unannounced.

Settings refuse them in production unless asked for by name (CLOUDFLARE_EMULATOR, EMAIL_CONSOLE); when they
run, every process logs a warning at start-up and every answer says the emulator is in use, so an API client
that receives an emulator certificate can tell.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

logger = logging.getLogger(__name__)

EMULATED_HEADER = "X-Cloudflare-Emulated"


def warn_about_stand_ins() -> None:
    """Called once per process (PortalConfig.ready)."""
    if settings.CLOUDFLARE_EMULATED:
        logger.warning(
            "Cloudflare emulator in use (no CLOUDFLARE_API_TOKEN): certificates are signed by a local test CA "
            "and do not work against Cloudflare"
        )
    if settings.EMAIL_CONSOLE:
        logger.warning("Console email in use (no EMAIL_HOST): mail, password-reset links included, goes to the log")


class EmulatedHeaderMiddleware:
    """Adds `X-Cloudflare-Emulated: true` to every answer while the emulator stands in for Cloudflare."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if settings.CLOUDFLARE_EMULATED:
            response[EMULATED_HEADER] = "true"
        return response
