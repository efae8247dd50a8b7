"""What the last firewall sync put in force at the edge: for each user (networks page, API) and for staff.

Read-only: everything comes from the zone's FirewallState row, which the sync writes (sync.py), and from the
audit log. `synced_inputs_at` is when the last successful sync read the database, so a change committed at or
before it is in the rules pushed at `last_synced_at`, unless that sync had to leave it out (`left_out`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser

from certificates.models import AuditEvent, Certificate, FirewallState

APPLIED = "applied"
WAITING = "waiting"
NOT_APPLIED = "not_applied"

# Users are told a sync failed, never why: the error may name Cloudflare internals, ids or limits.
SYNC_FAILED = "the last firewall sync failed; staff have been told and it is retried"


@dataclass(frozen=True)
class AllowlistStatus:
    status: str  # APPLIED, WAITING or NOT_APPLIED
    applied_at: datetime | None
    reason: str


def allowlist_status(*, user: AbstractBaseUser, zone_id: str) -> AllowlistStatus:
    """Whether the user's networks (or "any address", when they have none) are what the edge enforces."""
    state = FirewallState.objects.filter(zone_id=zone_id).first()
    if state is None or state.last_synced_at is None or state.synced_inputs_at is None:
        never = SYNC_FAILED if state and state.last_error else "no firewall sync has run yet"
        return AllowlistStatus(WAITING, None, never)
    if user.pk in _left_out_user_ids(state):
        return AllowlistStatus(NOT_APPLIED, None, _left_out_reason(state) or "the zone's rule limit is reached")
    changed_at = _last_allowlist_change(user)
    if changed_at is None or changed_at <= state.synced_inputs_at:
        return AllowlistStatus(APPLIED, state.last_synced_at, "")
    if state.last_error:
        return AllowlistStatus(WAITING, None, SYNC_FAILED)
    return AllowlistStatus(WAITING, None, "the firewall sync has not run since your last change")


def awaiting_the_edge(certificates: Iterable[Certificate], *, zone_id: str) -> set[int]:
    """The usable certificates the last successful sync had not read: the edge admits only the managed-CA
    certificates the allow rules list, so a new (or newly adopted or reactivated) one works once the sync after it
    has run. A portal CA's certificate works at once, but its owner's networks apply to it by the serial prefix in
    the binding rules, which the sync writes when the owner holds a first one.

    A certificate's `updated_at` moves only with its status, and every status change queues a sync.
    """
    state = FirewallState.objects.filter(zone_id=zone_id).first()
    read_at = state.synced_inputs_at if state and state.last_synced_at else None
    return {
        certificate.pk
        for certificate in certificates
        if certificate.status in Certificate.USABLE and (read_at is None or certificate.updated_at > read_at)
    }


def _last_allowlist_change(user: AbstractBaseUser) -> datetime | None:
    # services.allowlist_set records whose list changed in detail.user_id (staff may change it for them).
    event = (
        AuditEvent.objects.filter(action=AuditEvent.Action.ALLOWLIST_CHANGED, detail__user_id=user.pk)
        .order_by("-created_at")
        .first()
    )
    return event.created_at if event else None


def _left_out_reason(state: FirewallState) -> str:
    return str((state.left_out or {}).get("reason") or "").strip().rstrip(".")


def _left_out_user_ids(state: FirewallState) -> set[int]:
    return {int(user_id) for user_id in (state.left_out or {}).get("user_ids") or ()}


@dataclass(frozen=True)
class SyncTrouble:
    """What staff must hear about the last sync: what it could not push, and whether the latest attempt failed."""

    left_out_users: list[Any]  # user objects, in id order
    left_out_allow_ranges: int
    left_out_reason: str
    last_error: str
    # Portal CA (compiler.py): denied certificates that still pass, and whether the issuer rule is missing.
    left_out_denied_serials: int = 0
    left_out_issuer_rule: bool = False

    @property
    def left_anything_out(self) -> bool:
        return bool(
            self.left_out_users
            or self.left_out_allow_ranges
            or self.left_out_denied_serials
            or self.left_out_issuer_rule
        )

    def summary(self) -> str:
        """One line for the admin index and check_cloudflare."""
        parts = []
        if self.left_anything_out:
            items = [f"{len(self.left_out_users)} user(s)' networks", f"{self.left_out_allow_ranges} allow range(s)"]
            if self.left_out_denied_serials:
                items.append(f"{self.left_out_denied_serials} denied portal-CA certificate(s), which still pass")
            if self.left_out_issuer_rule:
                items.append("the portal CA issuer rule")
            listed = ", ".join(items[:-1]) + " and " + items[-1]
            parts.append(f"the last firewall sync left out {listed}: {self.left_out_reason}")
        if self.last_error:
            parts.append("the last firewall sync failed")
        line = "; ".join(parts)
        return line[:1].upper() + line[1:]


def sync_trouble(*, zone_id: str) -> SyncTrouble | None:
    """None when the last sync pushed everything and no attempt failed since."""
    state = FirewallState.objects.filter(zone_id=zone_id).first()
    if state is None:
        return None
    left_out = state.left_out or {}
    user_ids = _left_out_user_ids(state)
    trouble = SyncTrouble(
        left_out_users=list(get_user_model().objects.filter(pk__in=user_ids).order_by("pk")),
        left_out_allow_ranges=int(left_out.get("allow_ranges") or 0),
        left_out_reason=_left_out_reason(state),
        last_error=state.last_error,
        left_out_denied_serials=int(left_out.get("denied_serials") or 0),
        left_out_issuer_rule=bool(left_out.get("issuer_rule")),
    )
    return trouble if trouble.left_anything_out or trouble.last_error else None


@dataclass(frozen=True)
class RulesInZone:
    """The zone's custom rules as the last sync left them: the portal's and other teams' (both count against the
    plan's limit, FACTS.md §7)."""

    portal: int
    other: int

    @property
    def total(self) -> int:
        return self.portal + self.other


def rules_after_last_sync(state: FirewallState) -> RulesInZone:
    plan = state.last_plan or {}
    portal = int(plan.get("unchanged", 0)) + len(plan.get("add", ())) + len(plan.get("update", ()))
    return RulesInZone(portal=portal, other=int(plan.get("foreign_rules", 0)))
