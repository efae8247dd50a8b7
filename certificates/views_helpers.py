from __future__ import annotations

import ipaddress

from django.conf import settings
from django.contrib.auth.models import User
from django.http import HttpRequest
from django.shortcuts import get_object_or_404

from certificates.models import Certificate
from certificates.services import Origin


class AuthenticatedHttpRequest(HttpRequest):
    """The request a `login_required` view gets: its user is signed in (a type for mypy; Django never makes one)."""

    user: User


def own_certificate(owner: User, certificate_id: int) -> Certificate:
    """`owner`'s certificate `certificate_id`, for the pages and the API alike.

    Another user's certificate is a 404, not a 403: its existence is not revealed.
    """
    return get_object_or_404(Certificate, pk=certificate_id, owner=owner)


def origin_of(request: HttpRequest) -> Origin:
    user = getattr(request, "auth", None) or getattr(request, "user", None)
    return Origin(actor=user, remote_addr=client_address(request))


def client_address(request: HttpRequest) -> str | None:
    """The client's address for the audit log.

    Behind TRUSTED_PROXY_COUNT reverse proxies, each appends the address it saw to X-Forwarded-For, so the
    client is that many entries from the right; anything further left was written by the client and is not
    trusted. With no trusted proxies, REMOTE_ADDR.
    """
    hops = settings.TRUSTED_PROXY_COUNT
    if hops:
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
        if len(forwarded) >= hops:
            candidate = forwarded[-hops]
            try:
                return str(ipaddress.ip_address(candidate))
            except ValueError:
                pass
    return request.META.get("REMOTE_ADDR") or None
