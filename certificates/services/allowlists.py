"""Each user's allowlist of networks their certificates may call the API from."""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction

from certificates.allowlist import (
    AllowlistError,
    CheckedAllowlist,
    CountedAs,
    Problem,
    UnreachableAllowlistError,
    address_order,
    check_networks,
)
from certificates.cloudflare_client import get_zone_id
from certificates.enqueue import request_firewall_sync
from certificates.firewall.compiler import allowlist_fits
from certificates.models import AllowlistEntry, AuditEvent
from certificates.services.audit import Origin, audit
from certificates.services.authorities import owner_tag
from certificates.services.errors import PolicyError


def allowlist_get(*, user: User) -> list[str]:
    """The user's networks in address order (IPv4 first), as the page shows them and the checker stores them."""
    networks = AllowlistEntry.objects.filter(owner=user).values_list("network", flat=True)
    return sorted(networks, key=_address_order)


def _address_order(network: str) -> tuple[int, int, int]:
    try:
        return address_order(ipaddress.ip_network(network))
    except ValueError:
        return (99, 0, 0)  # written outside the checker (the admin, a shell): last, rather than a broken page


def allowlist_standing(*, user: User) -> CheckedAllowlist:
    """The saved list as the checker judges it today: which networks admit nothing, and whether none does
    (a list the user saved with the confirmation, which the page keeps saying blocks every request)."""
    networks = allowlist_get(user=user)
    try:
        return check_networks(networks, max_networks=max(len(networks), 1), confirm_unreachable=True)
    except AllowlistError:
        # Only an entry written outside the checker (the admin, a shell) can fail here; it is shown, not judged.
        return CheckedAllowlist(networks=tuple(networks))


class AllowlistRefusedError(PolicyError):
    """The list was not saved. `problems` name the entries at fault; `confirmable` when the only fault is that no
    network is one Cloudflare sees, which the user may confirm (`confirm_unreachable`) to save it anyway."""

    def __init__(self, message: str, *, problems: tuple[Problem, ...], confirmable: bool) -> None:
        super().__init__(message)
        self.problems = problems
        self.confirmable = confirmable


def allowlist_set(
    *,
    user: User,
    networks: list[str],
    origin: Origin,
    confirm_unreachable: bool = False,
    counted_as: CountedAs = "entry",
) -> CheckedAllowlist:
    """Replace the user's allowlist; an empty list allows any address. Nothing changes on bad input.

    `networks` are the page's lines or the API's items (`counted_as` says which, for the messages). A list of
    networks Cloudflare never sees (private ranges only, say) would block every request with the user's
    certificates: it is refused unless `confirm_unreachable`.
    """
    try:
        checked = check_networks(
            networks,
            max_networks=settings.ALLOWLIST_MAX_NETWORKS,
            confirm_unreachable=confirm_unreachable,
            counted_as=counted_as,
        )
    except AllowlistError as exc:
        confirmable = isinstance(exc, UnreachableAllowlistError)
        raise AllowlistRefusedError(str(exc), problems=exc.problems, confirmable=confirmable) from exc
    if not allowlist_fits(settings.PORTAL_API_HOSTNAMES, checked.networks):
        raise PolicyError(
            "These networks are too long to write into one firewall rule (4,096 characters); "
            "use fewer, larger networks (shorter prefixes)."
        )
    with transaction.atomic():
        old = allowlist_get(user=user)
        if set(old) == set(checked.networks):
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
            detail={
                "user_id": user.pk,
                "old": old,
                "new": list(checked.networks),
                # Said when the user saved, on purpose, a list that blocks every request with their certificates.
                **({"confirmed_unreachable": True} if checked.admits_nothing else {}),
            },
        )
        request_firewall_sync(get_zone_id())
    return checked
