"""Keeping the zone's custom rules equal to what the database says (DESIGN.md, "Firewall layout").

A sync reads the entrypoint once, compiles the desired rules, diffs them by `ref` against the portal's own rules
(those whose ref starts with PORTAL_RULE_REF_PREFIX) and writes the difference. Rules of others are never
changed or deleted, but the portal's rules are kept above them: a `skip` rule of another team placed above
would switch mTLS off for what it matches (FACTS.md §14). Writes to one zone are serialized by a lock that dies
with its holder (see _acquire_lease).

How it writes:
* a few changes (at most SINGLE_WRITES_AT_MOST) with the single-rule endpoints: adds first, at the top, then
  updates and moves, then deletes, so a rule is removed only once what replaces it is in place;
* otherwise (a first sync into a zone with rules, many changes, or adds that would pass the plan's rule limit
  before the deletes) one replacement of the entrypoint that carries every other rule back unchanged, by id and
  in its order. Cloudflare has no compare-and-set, so the entrypoint's version is read again just before the
  write; if it moved, the sync falls back to single-rule writes, deleting before adding only when the limit
  requires it.
The zone's rule count never passes CLOUDFLARE_CUSTOM_RULES_LIMIT. When the desired rules do not fit, the
compiler keeps the base rule, then the issuer rule, deny ranges, allow ranges and binding rules (compiler.py), and
the sync records what it left out (FirewallState.left_out) and logs it. If Cloudflare still refuses an add for
the limit (rules of zone custom rulesets count too, and the portal cannot list them), the sync plans again with one
rule less.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import Q
from django.utils import timezone

from certificates.authority import serials
from certificates.cloudflare_client import get_cloudflare_client
from certificates.enqueue import request_follow_up_sync
from certificates.firewall.compiler import (
    DesiredRule,
    FirewallCompileError,
    FirewallInputs,
    LeftOut,
    RuleBudgetExceeded,
    UserBinding,
    compile_rules,
    placement_of,
)
from certificates.models import AllowlistEntry, Certificate, CertificateAuthority, FirewallState, Zone
from cloudflare import errors as cf_errors
from cloudflare.client import CloudflareClient, before
from cloudflare.models import Rule, Ruleset, RuleSpec

logger = logging.getLogger(__name__)

# Without PostgreSQL, the lease a killed worker leaves behind lapses after this long.
LEASE = timedelta(seconds=60)
# A running sync renews its lease before a write once this much of it has passed (see _Lease), not before every
# write: a sync of hundreds of writes runs a few renewals, and every write still starts with two thirds of the
# lease (40 s) left, more than one Cloudflare call's timeout (CLOUDFLARE_TIMEOUT).
RENEW_AFTER = LEASE / 3
# Beyond this many single-rule writes, one replacement of the entrypoint costs fewer calls and bytes: each
# single-rule answer carries the whole ruleset (FACTS.md §8).
SINGLE_WRITES_AT_MOST = 3
# Planning again after Cloudflare refuses an add for the rule limit: at most this many times.
LIMIT_RETRIES = 3
TOP = before("")
# See firewall_sync: how long before the database read a change must be to count as read by it.
COMMIT_MARGIN = timedelta(seconds=2)


class FirewallSyncError(Exception):
    """The sync could not run or would break a limit; nothing was written."""


class SyncBusy(FirewallSyncError):
    """Another worker holds this zone's lease; it will push the same database state."""


@dataclass
class Plan:
    zone_id: str
    ruleset_id: str | None
    version: str = ""
    desired: list[DesiredRule] = field(default_factory=list)
    add: list[DesiredRule] = field(default_factory=list)
    update: list[tuple[Rule, DesiredRule]] = field(default_factory=list)
    delete: list[Rule] = field(default_factory=list)
    # The portal's rules that have another rule above them, and those other rules.
    misplaced: list[Rule] = field(default_factory=list)
    foreign_above: list[Rule] = field(default_factory=list)
    unchanged: int = 0
    foreign_rules: int = 0
    left_out: LeftOut = field(default_factory=LeftOut)
    mode: str = "none"  # how _apply wrote it: "none", "create", "rules" or "replace"

    @property
    def is_empty(self) -> bool:
        return not (self.add or self.update or self.delete or self.misplaced)

    @property
    def moves(self) -> list[Rule]:
        """Misplaced rules that are neither updated (an update moves them too) nor deleted."""
        touched = {rule.id for rule, _ in self.update} | {rule.id for rule in self.delete}
        return [rule for rule in self.misplaced if rule.id not in touched]

    @property
    def single_writes(self) -> int:
        return len(self.add) + len(self.update) + len(self.delete) + len(self.moves)

    def as_dict(self) -> dict[str, Any]:
        return {
            "zone_id": self.zone_id,
            "ruleset_id": self.ruleset_id,
            "mode": self.mode,
            "add": [asdict(rule) for rule in self.add],
            "update": [{"id": current.id, **asdict(desired)} for current, desired in self.update],
            "delete": [{"id": rule.id, "ref": rule.ref} for rule in self.delete],
            "move": [{"id": rule.id, "ref": rule.ref} for rule in self.moves],
            "foreign_above": [_describe(rule) for rule in self.foreign_above],
            "unchanged": self.unchanged,
            "foreign_rules": self.foreign_rules,
            "left_out": self.left_out.as_dict(),
        }


def _describe(rule: Rule) -> dict[str, Any]:
    return {"id": rule.id, "ref": rule.ref, "action": rule.action, "description": rule.description}


def firewall_inputs(*, zone_id: str) -> FirewallInputs:
    """What the rules must enforce, read from the database in five queries, one per kind of fact (the zone's
    marker, usable certificates, denied serials, allowlists, trusted portal CAs), whatever the zone's size."""
    now = timezone.now()
    unexpired = Q(expires_on__isnull=True) | Q(expires_on__gt=now)
    trusted = CertificateAuthority.Status.TRUSTED
    marker = Zone.objects.filter(zone_id=zone_id).values_list("serial_marker", flat=True).first() or ""
    usable = (
        Certificate.objects.filter(zone_id=zone_id, status__in=Certificate.USABLE, owner__is_active=True)
        .filter(unexpired)
        # A portal CA's certificates verify only while Cloudflare trusts the CA.
        .filter(Q(authority__isnull=True) | Q(authority__status=trusted))
    )
    identities = _usable_identities(
        usable.values_list("owner_id", "authority_id", "fingerprint_sha256", "serial_number", "owner__serial_tag__tag"),
        marker=marker,
    )
    denied = (
        Certificate.objects.filter(zone_id=zone_id, authority__status=trusted)
        .exclude(serial_number="")
        .filter(unexpired)
        .filter(~Q(status__in=Certificate.USABLE) | Q(owner__is_active=False))
        .values_list("serial_number", flat=True)
    )
    issuers = CertificateAuthority.objects.filter(status=trusted).values_list("subject_key_identifier", flat=True)
    networks: dict[int, list[str]] = {}
    tags: dict[int, str] = {}
    # Owners of usable certificates, and every active owner of a serial tag: a tag is bound to its owner's networks
    # before its first certificate is signed, so that certificate never passes from elsewhere, even before the
    # sync that follows its issuance (certificates.services.authorities.owner_tag).
    allowlists = AllowlistEntry.objects.filter(
        Q(owner_id__in=usable.values("owner_id")) | Q(owner__is_active=True, owner__serial_tag__isnull=False)
    )
    for owner_id, network, tag in allowlists.values_list("owner_id", "network", "owner__serial_tag__tag"):
        networks.setdefault(owner_id, []).append(network)
        if tag:
            tags[owner_id] = tag
    portal = bool(marker and issuers)
    bindings = tuple(
        UserBinding(
            user_id=owner_id,
            fingerprints=tuple(sorted(identities.bound.get(owner_id, ()))),
            networks=tuple(sorted(nets)),
            serial_prefix=identities.prefixes.get(owner_id)
            or (serials.owner_prefix(marker, tags[owner_id]) if portal and owner_id in tags else ""),
        )
        for owner_id, nets in sorted(networks.items())
    )
    return FirewallInputs(
        hostnames=tuple(settings.PORTAL_API_HOSTNAMES),
        allowed_fingerprints=tuple(sorted(identities.allowed)),
        bindings=bindings,
        portal_issuers=tuple(sorted(issuers)),
        serial_marker=marker,
        denied_serials=tuple(sorted({*denied, *identities.unbound_serials(networks)})),
    )


@dataclass
class _Identities:
    """How the rules know the usable certificates of a zone."""

    allowed: list[str] = field(default_factory=list)  # managed CA: the allow rules list their fingerprints
    bound: dict[int, list[str]] = field(default_factory=dict)  # per owner, fingerprints for the binding rules
    prefixes: dict[int, str] = field(default_factory=dict)  # per owner, the serial prefix of their portal-CA ones
    # Per owner, portal-CA certificates that neither the owner's prefix nor a fingerprint identifies (none should
    # be): no binding rule can hold them.
    unidentified: dict[int, list[str]] = field(default_factory=dict)

    def unbound_serials(self, networks: Mapping[int, object]) -> list[str]:
        """Fail closed: a certificate whose owner has an allowlist that no rule can apply to it does not pass."""
        return [serial for owner_id, found in self.unidentified.items() if owner_id in networks for serial in found]


def _usable_identities(rows: Iterable[tuple[int, int | None, str, str, str | None]], *, marker: str) -> _Identities:
    identities = _Identities()
    for owner_id, authority_id, fingerprint, serial, tag in rows:
        if authority_id is None:
            if fingerprint:
                identities.allowed.append(fingerprint)
                identities.bound.setdefault(owner_id, []).append(fingerprint)
            continue
        prefix = serials.owner_prefix(marker, tag) if marker and tag else ""
        if prefix and serial.startswith(prefix):
            identities.prefixes[owner_id] = prefix
        elif fingerprint:
            # Signed under another tag or marker (none should be): the owner's networks still apply, by fingerprint.
            identities.bound.setdefault(owner_id, []).append(fingerprint)
        elif serial:
            identities.unidentified.setdefault(owner_id, []).append(serial)
    return identities


def firewall_plan(
    *, zone_id: str, client: CloudflareClient | None = None, reserved: int = 0
) -> tuple[Plan, Ruleset | None]:
    """Read the entrypoint once and work out the writes; writes nothing. `reserved`: rules to leave free
    beyond those the entrypoint shows (learnt from a refusal, see the module's docstring)."""
    client = client or get_cloudflare_client()
    entrypoint = client.get_entrypoint(zone_id)
    return plan_for(entrypoint, zone_id=zone_id, reserved=reserved), entrypoint


def firewall_preview(*, zone_id: str) -> tuple[Plan | None, str | None]:
    """The plan a sync would apply now and why there is none, for the staff page: one read of the entrypoint with
    a web request's client, whose deadline keeps a slow Cloudflare from holding the page. Writes nothing."""
    try:
        plan, _ = firewall_plan(zone_id=zone_id, client=get_cloudflare_client(wait_for_budget=False))
    except (FirewallSyncError, cf_errors.CloudflareError) as exc:
        return None, str(exc)
    return plan, None


def plan_for(entrypoint: Ruleset | None, *, zone_id: str, reserved: int = 0) -> Plan:
    if not settings.PORTAL_API_HOSTNAMES:
        # With no hostnames the compiler wants no rules, which would delete the base rule: mTLS off.
        raise FirewallSyncError("PORTAL_API_HOSTNAMES is empty; refusing to remove the portal's rules.")
    rules = list(entrypoint.rules) if entrypoint else []
    current = [rule for rule in rules if _is_ours(rule)]
    foreign = [rule for rule in rules if not _is_ours(rule)]
    room = settings.CLOUDFLARE_CUSTOM_RULES_LIMIT - len(foreign) - reserved
    try:
        compiled = compile_rules(
            firewall_inputs(zone_id=zone_id),
            prefix=settings.PORTAL_RULE_REF_PREFIX,
            max_rules=room,
            previous=placement_of((rule.ref, rule.expression, rule.description) for rule in current),
        )
    except RuleBudgetExceeded as exc:
        raise FirewallSyncError(
            f"{exc} The zone allows {settings.CLOUDFLARE_CUSTOM_RULES_LIMIT} custom rules "
            f"(CLOUDFLARE_CUSTOM_RULES_LIMIT) and {len(foreign) + reserved} of them are not the portal's."
        ) from exc
    except FirewallCompileError as exc:
        raise FirewallSyncError(f"The rules cannot be compiled: {exc}") from exc
    plan = Plan(
        zone_id=zone_id,
        ruleset_id=entrypoint.id if entrypoint else None,
        version=entrypoint.version if entrypoint else "",
        desired=compiled.rules,
        foreign_rules=len(foreign),
        left_out=compiled.left_out,
    )
    by_ref = {rule.ref: rule for rule in current}
    for rule in compiled.rules:
        existing = by_ref.pop(rule.ref, None)
        if existing is None:
            plan.add.append(rule)
        elif _differs(existing, rule):
            plan.update.append((existing, rule))
        else:
            plan.unchanged += 1
    plan.delete = sorted(by_ref.values(), key=lambda rule: rule.ref)
    plan.misplaced, plan.foreign_above = _out_of_order(rules)
    return plan


def _is_ours(rule: Rule) -> bool:
    return rule.ref.startswith(settings.PORTAL_RULE_REF_PREFIX)


def _out_of_order(rules: Sequence[Rule]) -> tuple[list[Rule], list[Rule]]:
    """The portal's rules below any other rule, and the other rules above any of the portal's."""
    last_ours = max((index for index, rule in enumerate(rules) if _is_ours(rule)), default=-1)
    first_foreign = next((index for index, rule in enumerate(rules) if not _is_ours(rule)), len(rules))
    misplaced = [rule for rule in rules[first_foreign:] if _is_ours(rule)]
    above = [rule for rule in rules[: last_ours + 1] if not _is_ours(rule)]
    return misplaced, above


def _differs(current: Rule, desired: DesiredRule) -> bool:
    return (current.expression, current.action, current.description, current.enabled) != (
        desired.expression,
        desired.action,
        desired.description,
        True,
    )


def firewall_sync(*, zone_id: str, dry_run: bool = False, follow_up: int = 0) -> Plan:
    """Make the zone's rules what the database says; returns the plan it carried out.

    `follow_up`: how many syncs in a row were queued to check again after a write whose outcome is unknown.
    """
    if dry_run:
        return firewall_plan(zone_id=zone_id)[0]
    lease = _Lease(zone_id=zone_id, renewed_at=timezone.now())
    owner = lease.owner = _acquire_lease(zone_id)
    client: CloudflareClient | None = None
    try:
        client = get_cloudflare_client()
        # Read before the database is: a change whose request is newer than this value may be missing from this
        # sync, so the mark is cleared below only if it still holds this value (compare-and-set).
        requested_at = FirewallState.objects.filter(zone_id=zone_id).values_list("sync_requested_at", flat=True)[0]
        # A change is recorded (audit event) a moment before its transaction commits; one made just before the
        # read may not be visible to it yet. Its own sync, queued at commit, follows this one.
        inputs_read_at = timezone.now() - COMMIT_MARGIN
        plan, ruleset = _plan_and_apply(client, zone_id, keep_lease=lease.keep)
        _check_again_if_uncertain(zone_id, client, follow_up=follow_up)
        FirewallState.objects.filter(zone_id=zone_id).update(
            last_synced_at=timezone.now(),
            synced_inputs_at=inputs_read_at,
            last_plan=plan.as_dict(),
            left_out=plan.left_out.as_dict(),
            last_error="",
            ruleset_id=ruleset.id if ruleset else "",
            ruleset_version=ruleset.version if ruleset else "",
        )
        if requested_at is not None:
            FirewallState.objects.filter(zone_id=zone_id, sync_requested_at=requested_at).update(sync_requested_at=None)
        if plan.left_out:
            logger.warning(
                "Firewall sync of zone %s left out %s%d denied portal-CA serial(s), %d allow range(s) and the "
                "allowlists of user(s) %s: %s",
                zone_id,
                "the issuer rule, " if plan.left_out.issuer_rule else "",
                plan.left_out.denied_serials,
                plan.left_out.allow_ranges,
                ", ".join(str(user) for user in plan.left_out.user_ids) or "none",
                plan.left_out.reason,
            )
        return plan
    except Exception as exc:
        FirewallState.objects.filter(zone_id=zone_id).update(last_error=str(exc)[:2000])
        if client is not None:
            _check_again_if_uncertain(zone_id, client, follow_up=follow_up)
        raise
    finally:
        _release_lease(zone_id, owner)


def _check_again_if_uncertain(zone_id: str, client: CloudflareClient, *, follow_up: int) -> None:
    """A write that timed out (or failed after sending) may still commit, later, over a newer write: a follow-up
    sync reads the rules again once it can no longer land and rewrites whatever it undid (issue 9, point 6)."""
    if not client.uncertain_writes:
        return
    request_follow_up_sync(zone_id, follow_up=follow_up + 1)


def _plan_and_apply(
    client: CloudflareClient, zone_id: str, *, keep_lease: Callable[[], None]
) -> tuple[Plan, Ruleset | None]:
    reserved = 0
    while True:
        plan, entrypoint = firewall_plan(zone_id=zone_id, client=client, reserved=reserved)
        try:
            return _apply(client, plan, entrypoint, keep_lease=keep_lease, reserved=reserved)
        except cf_errors.RuleLimitError:
            # Rules the entrypoint does not show (zone custom rulesets) count against the limit too.
            if reserved >= LIMIT_RETRIES:
                raise
            reserved += 1
            logger.info("Cloudflare refused a rule for the zone's limit; planning with %d rule(s) fewer", reserved)


def _apply(
    client: CloudflareClient,
    plan: Plan,
    entrypoint: Ruleset | None,
    *,
    keep_lease: Callable[[], None],
    reserved: int = 0,
) -> tuple[Plan, Ruleset | None]:
    """Carry out the plan (or, if the entrypoint changed under it, a new plan); returns what was done.

    Each write first keeps the lease (renews it when due), so a sync that lost it (it ran too long) stops instead
    of racing.
    """
    if plan.is_empty:
        return plan, entrypoint
    if entrypoint is None:
        return plan, _create(client, plan, keep_lease)
    limit = settings.CLOUDFLARE_CUSTOM_RULES_LIMIT
    if plan.single_writes <= SINGLE_WRITES_AT_MOST and len(entrypoint.rules) + len(plan.add) <= limit:
        return plan, _write_rules(client, plan, entrypoint, keep_lease=keep_lease)
    keep_lease()
    fresh = client.get_entrypoint(plan.zone_id)
    if fresh is not None and fresh.version == entrypoint.version:
        plan.mode = "replace"
        keep_lease()
        return plan, client.replace_entrypoint(plan.zone_id, rules=_replacement(plan, fresh))
    # Someone else wrote in between: no blind replacement over their change, single-rule writes instead.
    plan = plan_for(fresh, zone_id=plan.zone_id, reserved=reserved)
    if fresh is None:
        return plan, _create(client, plan, keep_lease)
    over_limit = len(fresh.rules) + len(plan.add) > limit
    return plan, _write_rules(client, plan, fresh, keep_lease=keep_lease, deletes_first=over_limit)


def _create(client: CloudflareClient, plan: Plan, keep_lease: Callable[[], None]) -> Ruleset:
    plan.mode = "create"
    keep_lease()
    return client.create_entrypoint(plan.zone_id, rules=[_spec(rule) for rule in plan.desired])


def _write_rules(
    client: CloudflareClient,
    plan: Plan,
    entrypoint: Ruleset,
    *,
    keep_lease: Callable[[], None],
    deletes_first: bool = False,
) -> Ruleset:
    """Single-rule writes: new rules go to the top, and rules below another team's are moved up."""
    plan.mode = "rules"
    ruleset = entrypoint
    zone_id, ruleset_id = plan.zone_id, entrypoint.id

    def delete_all() -> None:
        nonlocal ruleset
        for rule in plan.delete:
            keep_lease()
            ruleset = client.delete_rule(zone_id, ruleset_id, rule.id)

    if deletes_first:
        delete_all()
    for desired in reversed(plan.add):  # each goes to the top, so the last added ends first
        keep_lease()
        ruleset = client.add_rule(zone_id, ruleset_id, _spec(desired), position=TOP)
    misplaced = {rule.id for rule in plan.misplaced}
    for current, desired in plan.update:
        if current.id not in misplaced:
            keep_lease()
            ruleset = client.update_rule(zone_id, ruleset_id, current.id, _spec(desired))
    # Rules below another team's go back to the top, last first, so that they end in the compiled order.
    updates = {current.id: desired for current, desired in plan.update}
    rank = {rule.ref: index for index, rule in enumerate(plan.desired)}
    deleted = {rule.id for rule in plan.delete}
    for rule in sorted(plan.misplaced, key=lambda rule: rank.get(rule.ref, -1), reverse=True):
        if rule.id in deleted:
            continue
        keep_lease()
        if rule.id in updates:
            ruleset = client.update_rule(zone_id, ruleset_id, rule.id, _spec(updates[rule.id]), position=TOP)
        else:
            ruleset = client.move_rule(zone_id, ruleset_id, rule, TOP)
    if not deletes_first:
        delete_all()
    return ruleset


def _replacement(plan: Plan, entrypoint: Ruleset) -> list[RuleSpec | Rule]:
    """The whole entrypoint: the portal's rules first (keeping the ids of those that stay), then every other
    rule exactly as it is, in its order."""
    ids = {rule.ref: rule.id for rule in entrypoint.rules if _is_ours(rule)}
    ours: list[RuleSpec | Rule] = [_spec(rule, rule_id=ids.get(rule.ref)) for rule in plan.desired]
    return ours + [rule for rule in entrypoint.rules if not _is_ours(rule)]


def _spec(rule: DesiredRule, *, rule_id: str | None = None) -> RuleSpec:
    return RuleSpec(
        ref=rule.ref, expression=rule.expression, action=rule.action, description=rule.description, id=rule_id
    )


def _acquire_lease(zone_id: str) -> str:
    """Take the zone's sync lock or raise SyncBusy; returns the owner token the row records.

    On PostgreSQL a session advisory lock decides: the server releases it the moment the holder's connection
    ends, so a killed worker blocks no sync. Elsewhere (SQLite, development) a lease on the FirewallState row,
    renewed as it runs (_Lease), lapses LEASE after its holder died.
    """
    FirewallState.objects.get_or_create(zone_id=zone_id)
    owner = uuid.uuid4().hex
    now = timezone.now()
    if _uses_advisory_lock():
        if not _advisory(zone_id, "SELECT pg_try_advisory_lock(%s)"):
            raise SyncBusy(f"another sync of zone {zone_id} is running")
        # The row names the holder, so that _renew_lease notices a sync that took over.
        FirewallState.objects.filter(zone_id=zone_id).update(lease_owner=owner, lease_until=now + LEASE)
        return owner
    claimed = (
        FirewallState.objects.filter(zone_id=zone_id)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .update(lease_owner=owner, lease_until=now + LEASE)
    )
    if not claimed:
        raise SyncBusy(f"another sync of zone {zone_id} is running")
    return owner


@dataclass
class _Lease:
    """The lease of a running sync, renewed by time rather than per write."""

    zone_id: str
    renewed_at: datetime  # taken before the lease was written: its lease_until is at least this plus LEASE
    owner: str = ""

    def keep(self) -> None:
        """Before a write: renew the lease once RENEW_AFTER has passed; raises SyncBusy if it was lost.

        A lease that could have lapsed (LEASE passed) is always renewed first, so a sync overtaken by another
        still finds out before it writes."""
        now = timezone.now()
        if now - self.renewed_at < RENEW_AFTER:
            return
        _renew_lease(self.zone_id, self.owner, now=now)
        self.renewed_at = now


def _renew_lease(zone_id: str, owner: str, *, now: datetime | None = None) -> None:
    held = not _uses_advisory_lock() or _holds_advisory_lock(zone_id)
    renewed = held and FirewallState.objects.filter(zone_id=zone_id, lease_owner=owner).update(
        lease_until=(now or timezone.now()) + LEASE
    )
    if not renewed:
        raise SyncBusy(f"the sync of zone {zone_id} lost its lease; another sync took over")


def _release_lease(zone_id: str, owner: str) -> None:
    FirewallState.objects.filter(zone_id=zone_id, lease_owner=owner).update(lease_owner="", lease_until=None)
    if _uses_advisory_lock():
        try:
            _advisory(zone_id, "SELECT pg_advisory_unlock(%s)")
        except DatabaseError:
            # The connection is gone, and the lock with it.
            logger.warning("could not release the sync lock of zone %s; its connection is gone", zone_id)


def _uses_advisory_lock() -> bool:
    return connection.vendor == "postgresql"


def advisory_lock_key(zone_id: str) -> int:
    """The zone's advisory lock: a signed 64-bit number, as PostgreSQL takes it, named after the zone."""
    digest = hashlib.sha256(f"mtls-portal:firewall-sync:{zone_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _advisory(zone_id: str, sql: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(sql, [advisory_lock_key(zone_id)])
        return bool(cursor.fetchone()[0])


def _holds_advisory_lock(zone_id: str) -> bool:
    """Whether this connection still holds the zone's lock (a reconnect would have lost it)."""
    key = advisory_lock_key(zone_id) & 0xFFFFFFFFFFFFFFFF
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() "
            "AND granted AND classid::bigint = %s AND objid::bigint = %s AND objsubid = 1)",
            [key >> 32, key & 0xFFFFFFFF],
        )
        return bool(cursor.fetchone()[0])
