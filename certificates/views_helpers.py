from __future__ import annotations

from django.http import HttpRequest

from certificates.services import Origin


def origin_of(request: HttpRequest) -> Origin:
    user = getattr(request, "auth", None) or getattr(request, "user", None)
    return Origin(actor=user, remote_addr=request.META.get("REMOTE_ADDR"))
