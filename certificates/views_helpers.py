from __future__ import annotations

import ipaddress
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from django.urls import reverse

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


def issuer_of(certificate: Certificate) -> dict[str, Any]:
    """Who signed the certificate, and where origins find that CA and its CRL: for the API and the pages."""
    authority = certificate.authority
    if authority is None:
        return {
            "kind": "cloudflare_managed",
            "name": "Cloudflare managed CA",
            "ca_certificate_url": None,
            "crl_url": None,
        }
    base = settings.PORTAL_BASE_URL
    return {
        "kind": "portal_ca",
        "name": authority.name,
        "ca_certificate_url": base + reverse("certificates:authority_certificate", args=[authority.pk]),
        "crl_url": base + reverse("certificates:crl", args=[authority.pk]),
    }
