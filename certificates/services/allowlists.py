"""Each user's allowlist of networks their certificates may call the API from."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction

from certificates.allowlist import AllowlistError, CheckedAllowlist, check_networks
from certificates.cloudflare_client import get_zone_id
from certificates.enqueue import request_firewall_sync
from certificates.firewall.compiler import allowlist_fits
from certificates.models import AllowlistEntry, AuditEvent
from certificates.services.audit import Origin, audit
from certificates.services.authorities import owner_tag
from certificates.services.errors import PolicyError


def allowlist_get(*, user: User) -> list[str]:
    return list(AllowlistEntry.objects.filter(owner=user).values_list("network", flat=True))


def allowlist_set(*, user: User, networks: list[str], origin: Origin) -> CheckedAllowlist:
    """Replace the user's allowlist; an empty list allows any address. Nothing changes on bad input."""
    try:
        checked = check_networks(networks, max_networks=settings.ALLOWLIST_MAX_NETWORKS)
    except AllowlistError as exc:
        raise PolicyError(str(exc)) from exc
    if not allowlist_fits(settings.PORTAL_API_HOSTNAMES, checked.networks):
        raise PolicyError(
            "These networks are too long to write into one firewall rule (4,096 characters); "
            "use fewer, larger networks (shorter prefixes)."
        )
    with transaction.atomic():
        old = allowlist_get(user=user)
        if old == list(checked.networks):
            return checked
        AllowlistEntry.objects.filter(owner=user).exclude(network__in=checked.networks).delete()
        AllowlistEntry.objects.bulk_create(
            [AllowlistEntry(owner=user, network=n) for n in checked.networks if n not in old]
        )
        if checked.networks:
            owner_tag(user)  # the rules bind the tag, so the user's next portal-CA certificate is bound at once
        audit(
            AuditEvent.Action.ALLOWLIST_CHANGED,
            origin,
            detail={"user_id": user.pk, "old": old, "new": list(checked.networks)},
        )
        request_firewall_sync(get_zone_id())
    return checked
