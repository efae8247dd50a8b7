"""Keeping the zone's custom rules equal to what the database says (DESIGN.md, "Firewall layout").

A sync reads the entrypoint once, compiles the desired rules, diffs them by `ref` against the portal's
own rules (those whose ref starts with PORTAL_RULE_REF_PREFIX) and writes only what changed with the
single-rule endpoints. Rules without the prefix are never changed, moved or deleted. Writes to one zone
are serialized by a lease on its FirewallState row.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from certificates.firewall.compiler import (
    DesiredRule,
    FirewallCompileError,
    FirewallInputs,
    RuleBudgetExceeded,
    UserBinding,
    compile_rules,
    placement_of,
)
from certificates.models import AllowlistEntry, Certificate, FirewallState
from cloudflare.client import CloudflareClient
from cloudflare.models import Rule, Ruleset, RuleSpec
from portal.integrations import get_cloudflare_client

logger = logging.getLogger(__name__)

# Long enough for a large sync that waits for the call budget; every write renews it (see _apply).
LEASE = timedelta(minutes=5)


class FirewallSyncError(Exception):
    """The sync could not run or would break a limit; nothing was written."""


class SyncBusy(FirewallSyncError):
    """Another worker holds this zone's lease; it will push the same database state."""


@dataclass
class Plan:
    zone_id: str
    ruleset_id: str | None
    add: list[DesiredRule] = field(default_factory=list)
    update: list[tuple[Rule, DesiredRule]] = field(default_factory=list)
    delete: list[Rule] = field(default_factory=list)
    unchanged: int = 0
    foreign_rules: int = 0

    @property
    def is_empty(self) -> bool:
        return not (self.add or self.update or self.delete)

    def as_dict(self) -> dict[str, Any]:
        return {
            "zone_id": self.zone_id,
            "ruleset_id": self.ruleset_id,
            "add": [asdict(rule) for rule in self.add],
            "update": [{"id": current.id, **asdict(desired)} for current, desired in self.update],
            "delete": [{"id": rule.id, "ref": rule.ref} for rule in self.delete],
            "unchanged": self.unchanged,
            "foreign_rules": self.foreign_rules,
        }


def firewall_inputs(*, zone_id: str) -> FirewallInputs:
    """What the rules must enforce, read from the database in three queries."""
    now = timezone.now()
    certificates = list(
        Certificate.objects.filter(zone_id=zone_id)
        .exclude(fingerprint_sha256="")
        .filter(status__in=Certificate.USABLE | Certificate.DENIED)
        .values_list("owner_id", "owner__is_active", "status", "fingerprint_sha256", "expires_on")
    )
    denied: set[str] = set()
    usable: dict[int, list[str]] = {}
    for owner_id, owner_active, status, fingerprint, expires_on in certificates:
        if expires_on is not None and expires_on <= now:
            continue  # an expired certificate no longer verifies; no rule needs to name it
        if status in Certificate.DENIED or not owner_active:
            denied.add(fingerprint)
        else:
            usable.setdefault(owner_id, []).append(fingerprint)
    networks: dict[int, list[str]] = {}
    for owner_id, network in AllowlistEntry.objects.filter(owner_id__in=usable).values_list("owner_id", "network"):
        networks.setdefault(owner_id, []).append(network)
    bindings = tuple(
        UserBinding(user_id=owner_id, fingerprints=tuple(sorted(usable[owner_id])), networks=tuple(sorted(nets)))
        for owner_id, nets in sorted(networks.items())
    )
    return FirewallInputs(
        hostnames=tuple(settings.PORTAL_API_HOSTNAMES),
        denied_fingerprints=tuple(sorted(denied)),
        bindings=bindings,
    )


def firewall_plan(*, zone_id: str, client: CloudflareClient | None = None) -> tuple[Plan, Ruleset | None]:
    """Read the entrypoint once and work out the writes; writes nothing."""
    if not settings.PORTAL_API_HOSTNAMES:
        # With no hostnames the compiler wants no rules, which would delete the base rule: mTLS off.
        raise FirewallSyncError("PORTAL_API_HOSTNAMES is empty; refusing to remove the portal's rules.")
    client = client or get_cloudflare_client()
    prefix = settings.PORTAL_RULE_REF_PREFIX
    entrypoint = client.get_entrypoint(zone_id)
    current = [rule for rule in (entrypoint.rules if entrypoint else ()) if rule.ref.startswith(prefix)]
    foreign = len(entrypoint.rules) - len(current) if entrypoint else 0
    try:
        desired = compile_rules(
            firewall_inputs(zone_id=zone_id),
            prefix=prefix,
            max_rules=settings.CLOUDFLARE_CUSTOM_RULES_LIMIT - foreign,
            previous=placement_of((rule.ref, rule.expression, rule.description) for rule in current),
        )
    except RuleBudgetExceeded as exc:
        raise FirewallSyncError(
            f"{exc} The zone allows {settings.CLOUDFLARE_CUSTOM_RULES_LIMIT} custom rules "
            f"(CLOUDFLARE_CUSTOM_RULES_LIMIT) and {foreign} of them are not the portal's."
        ) from exc
    except FirewallCompileError as exc:
        raise FirewallSyncError(f"The rules cannot be compiled: {exc}") from exc
    plan = Plan(zone_id=zone_id, ruleset_id=entrypoint.id if entrypoint else None, foreign_rules=foreign)
    by_ref = {rule.ref: rule for rule in current}
    for rule in desired:
        existing = by_ref.pop(rule.ref, None)
        if existing is None:
            plan.add.append(rule)
        elif _differs(existing, rule):
            plan.update.append((existing, rule))
        else:
            plan.unchanged += 1
    plan.delete = sorted(by_ref.values(), key=lambda rule: rule.ref)
    return plan, entrypoint


def _differs(current: Rule, desired: DesiredRule) -> bool:
    return (current.expression, current.action, current.description, current.enabled) != (
        desired.expression,
        desired.action,
        desired.description,
        True,
    )


def firewall_sync(*, zone_id: str, dry_run: bool = False) -> Plan:
    """Push the desired rules: adds, then updates, then deletes, so that a rule is removed only once what
    replaces it is in place. (A clause moving between two existing rules is absent between two updates.)"""
    if dry_run:
        return firewall_plan(zone_id=zone_id)[0]
    owner = _acquire_lease(zone_id)
    try:
        client = get_cloudflare_client()
        plan, entrypoint = firewall_plan(zone_id=zone_id, client=client)
        ruleset = _apply(client, plan, entrypoint, keep_lease=lambda: _renew_lease(zone_id, owner))
        FirewallState.objects.filter(zone_id=zone_id).update(
            last_synced_at=timezone.now(),
            last_plan=plan.as_dict(),
            last_error="",
            ruleset_id=ruleset.id if ruleset else "",
            ruleset_version=ruleset.version if ruleset else "",
        )
        return plan
    except Exception as exc:
        FirewallState.objects.filter(zone_id=zone_id).update(last_error=str(exc)[:2000])
        raise
    finally:
        FirewallState.objects.filter(zone_id=zone_id, lease_owner=owner).update(lease_owner="", lease_until=None)


def _apply(
    client: CloudflareClient, plan: Plan, entrypoint: Ruleset | None, *, keep_lease: Callable[[], None]
) -> Ruleset | None:
    """Each write first renews the lease, so a sync that lost it (it ran too long) stops instead of racing."""
    if plan.is_empty:
        return entrypoint
    specs = {rule.ref: _spec(rule) for rule in plan.add}
    if entrypoint is None:
        keep_lease()
        return client.create_entrypoint(plan.zone_id, rules=list(specs.values()))
    ruleset: Ruleset = entrypoint
    for rule in plan.add:
        keep_lease()
        ruleset = client.add_rule(plan.zone_id, entrypoint.id, specs[rule.ref])
    for current, desired in plan.update:
        keep_lease()
        ruleset = client.update_rule(plan.zone_id, entrypoint.id, current.id, _spec(desired))
    for rule in plan.delete:
        keep_lease()
        ruleset = client.delete_rule(plan.zone_id, entrypoint.id, rule.id)
    return ruleset


def _spec(rule: DesiredRule) -> RuleSpec:
    return RuleSpec(ref=rule.ref, expression=rule.expression, action=rule.action, description=rule.description)


def _acquire_lease(zone_id: str) -> str:
    FirewallState.objects.get_or_create(zone_id=zone_id)
    owner = uuid.uuid4().hex
    now = timezone.now()
    claimed = (
        FirewallState.objects.filter(zone_id=zone_id)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .update(lease_owner=owner, lease_until=now + LEASE)
    )
    if not claimed:
        raise SyncBusy(f"another sync of zone {zone_id} is running")
    return owner


def _renew_lease(zone_id: str, owner: str) -> None:
    renewed = FirewallState.objects.filter(zone_id=zone_id, lease_owner=owner).update(
        lease_until=timezone.now() + LEASE
    )
    if not renewed:
        raise SyncBusy(f"the sync of zone {zone_id} lost its lease; another sync took over")
