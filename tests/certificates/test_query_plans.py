"""No hot query reads a large table from end to end (issue #12: 50,000 certificates, 93,000 audit events).

Each entry of HOT_PATHS runs a real code path (a page, an API call, a worker task, an admin list) and captures the
SQL it sends. Each statement that touches a large table is then EXPLAINed with `enable_seqscan = off`: PostgreSQL
then plans a sequential scan only where no index can serve the query, so a "Seq Scan" on a large table means a
missing index, whatever the (small) test data. Hash and merge joins are off too (with a few rows they would read
whole indexes in order; at scale the joins are index lookups), and two more ways of reading a whole table through
an index fail as well: an index read end to end for its order with no LIMIT to stop it, and a condition on a
column of an index but not its first. A new query path is one more line in HOT_PATHS.

Without migration 0012's indexes, 28 of the 43 paths fail (every admin list, filter and search, and seven workers).

PostgreSQL only (the plans are its own): skipped on SQLite, and required where REQUIRE_SERVICES=1 (CI).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.contrib import admin
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from certificates import admission, services, tasks
from certificates.cloudflare_client import get_zone_id
from certificates.firewall.sync import firewall_inputs
from certificates.models import AuditEvent, Certificate, UnknownCertificate
from certificates.services import crls, lifecycle
from certificates.services.audit import audit
from tests.conftest import make_user, services_required
from tests.support.accounts import signed_in
from tests.support.api import token_for
from tests.support.listing import certificate_rows
from tests.support.pki import policy_csr
from tests.support.portal_ca import trusted_portal_ca

# Tables that grow with the users (10,000 users, 50,000 certificates, 20,000 networks, 93,000 events measured).
LARGE_TABLES = frozenset(
    {
        "auth_user",
        "certificates_certificate",
        "certificates_auditevent",
        "certificates_allowlistentry",
        "certificates_apitoken",
    }
)
EXPLAINED = ("SELECT", "UPDATE", "DELETE", "WITH")
READ_ALL_FIRST = frozenset({"Sort", "Aggregate", "Hash", "Materialize", "SetOp", "WindowAgg"})

# Reads of a whole index that a path makes by design, each with its reason. Anything else fails the test.
WHOLE_READS_BY_DESIGN = {
    ("worker: firewall inputs", "allowlist_network"): (
        "the rules bind the networks of every owner who holds a usable certificate or a serial tag: nearly all"
    ),
    # tasks._zones: the zones certificates are in, one index entry per certificate every 30 s (a few ms at
    # 50,000). The Zone table has a row per zone issued into since migration 0004, but not for older rows.
    ("worker: polling", "certificate_zone_public_key"): "DISTINCT zone_id over every certificate (tasks._zones)",
    ("worker: reconciliation", "certificate_zone_public_key"): "DISTINCT zone_id over every certificate (tasks._zones)",
}


@pytest.fixture(autouse=True)
def postgresql_only():
    if connection.vendor != "postgresql":
        if services_required():
            pytest.fail("REQUIRE_SERVICES=1: the query plans must be checked on PostgreSQL (set DATABASE_URL)")
        pytest.skip("query plans are PostgreSQL's: run with DATABASE_URL=postgres://...")


@dataclass
class World:
    """A little of everything the paths read: both issuers, every status, events, networks, tokens."""

    alice: object
    newcomer: object  # no certificate yet: within the issuance rate
    charlie: object
    user: Client
    staff: Client
    api: object
    issued: Certificate  # by Cloudflare's managed CA (the emulator), through the real issuance path
    signed: Certificate  # by a portal CA
    authority_id: int


@pytest.fixture(autouse=True)
def admin_lists_paginate(monkeypatch):
    """At scale every admin list is a page (LIMIT); with the test's few rows it would be whole (no LIMIT)."""
    for model_admin in admin.site._registry.values():
        monkeypatch.setattr(model_admin, "list_per_page", 1)


@pytest.fixture
def world(emulator, alice, bob, charlie, api) -> World:
    zone_id = get_zone_id()
    issued = services.certificate_issue(
        user=alice, csr=policy_csr(alice), validity_days=365, name="laptop", origin=services.Origin(actor=alice)
    )
    authority = trusted_portal_ca(zone_id="another-zone")
    certificate_rows(alice, 24)
    rows = certificate_rows(bob, 12, authority=authority)
    Certificate.objects.filter(zone_id="zone").update(zone_id=zone_id)
    # Documentation ranges, which the edge never sees: saved as a confirmed choice (certificates.allowlist).
    for user, network in ((alice, "203.0.113.0/24"), (bob, "198.51.100.0/24")):
        services.allowlist_set(
            user=user, networks=[network], origin=services.Origin(actor=user), confirm_unreachable=True
        )
        token_for(user)
    audit(AuditEvent.Action.REVOKED, services.Origin(actor=alice), certificate=issued)
    UnknownCertificate.objects.create(zone_id=zone_id, cloudflare_id="f" * 32, status="active", common_name="outside")
    signed = next(row for row in rows if row.status == Certificate.Status.ACTIVE)
    return World(
        alice,
        make_user("dave"),
        charlie,
        signed_in(alice),
        signed_in(charlie),
        api.as_user(alice),
        issued,
        signed,
        authority.pk,
    )


def changelist(model: str, **params: str) -> Callable[[World], object]:
    return lambda w: w.staff.get(reverse(f"admin:certificates_{model}_changelist"), params)


# Each: what runs the path, given the world. The paths a user waits for first, then staff's, then the workers'.
HOT_PATHS: dict[str, Callable[[World], object]] = {
    "dashboard (current, newest first)": lambda w: w.user.get(reverse("certificates:dashboard")),
    "dashboard (all, expiring soonest)": lambda w: w.user.get(
        reverse("certificates:dashboard"), {"status": "all", "sort": "expires_on"}
    ),
    "dashboard search": lambda w: w.user.get(reverse("certificates:dashboard"), {"status": "all", "q": "box"}),
    "certificate page and its history": lambda w: w.user.get(reverse("certificates:detail", args=[w.issued.pk])),
    "new certificate page (room, quotas)": lambda w: w.user.get(reverse("certificates:new")),
    "networks page (last change)": lambda w: w.user.get(reverse("certificates:allowlist")),
    "tokens page": lambda w: w.user.get(reverse("certificates:tokens")),
    "API: certificate list": lambda w: w.api.get("/certificates?status=active&limit=5"),
    "API: certificate search": lambda w: w.api.get("/certificates?q=box"),
    "API: CSR policy (room, count)": lambda w: w.api.get("/csr-policy"),
    "issuance (duplicate key, rates, zone room)": lambda w: services.certificate_issue(
        user=w.newcomer,
        csr=policy_csr(w.newcomer),
        validity_days=365,
        name="ci",
        origin=services.Origin(actor=w.newcomer),
    ),
    "revocation by the owner (rate limit)": lambda w: services.certificate_revoke(
        certificate=w.issued, origin=services.Origin(actor=w.alice)
    ),
    "admin: the index's zone overview": lambda w: w.staff.get(reverse("admin:index")),
    "admin: certificates": changelist("certificate"),
    "admin: certificates, a later page": changelist("certificate", p="3"),
    "admin: certificates by status": changelist("certificate", status__exact="revoked"),
    "admin: certificates by status, a later page": changelist("certificate", status__exact="revoked", p="2"),
    "admin: certificates expired": changelist("certificate", expiry="expired"),
    "admin: certificates expiring within 7 days": changelist("certificate", expiry="7d"),
    "admin: certificates expiring later": changelist("certificate", expiry="later"),
    "admin: certificates made in the last 7 days": lambda w: w.staff.get(
        reverse("admin:certificates_certificate_changelist"),
        {"created_at__gte": str(timezone.now() - timedelta(days=7))},
    ),
    "admin: certificates sorted by expiry": changelist("certificate", o="4"),
    "admin: certificate search by fingerprint": lambda w: w.staff.get(
        reverse("admin:certificates_certificate_changelist"), {"q": w.issued.fingerprint_sha256.upper()}
    ),
    "admin: certificate search by serial": lambda w: w.staff.get(
        reverse("admin:certificates_certificate_changelist"), {"q": w.signed.serial_number.lower()}
    ),
    "admin: certificate search by Cloudflare id": lambda w: w.staff.get(
        reverse("admin:certificates_certificate_changelist"), {"q": w.issued.cloudflare_id}
    ),
    "admin: certificate search by email prefix": changelist("certificate", q="ALICE@"),
    "admin: audit log": changelist("auditevent"),
    "admin: audit log, a later page": changelist("auditevent", p="3"),
    "admin: audit log by action": changelist("auditevent", action__exact="certificate.issued"),
    "admin: audit log search": lambda w: w.staff.get(
        reverse("admin:certificates_auditevent_changelist"), {"q": w.issued.fingerprint_sha256}
    ),
    "admin: tokens": changelist("apitoken"),
    "admin: tokens search": changelist("apitoken", q="alice"),
    "admin: allowlists": changelist("allowlistentry"),
    "admin: allowlists search": changelist("allowlistentry", q="192.0.2.0/24"),
    "admin: unknown certificates": changelist("unknowncertificate"),
    "admin: portal CAs (certificates in use)": changelist("certificateauthority"),
    "worker: polling": lambda w: tasks.poll_certificates(),
    "worker: reconciliation": lambda w: tasks.reconcile_zone(),
    "worker: stuck issuances": lambda w: tasks.sweep_stuck(),
    "worker: expired certificates": lambda w: lifecycle.certificates_mark_expired(zone_id=get_zone_id()),
    "worker: expiry reminders": lambda w: tasks.send_expiry_reminders(),
    "worker: firewall inputs": lambda w: firewall_inputs(zone_id=get_zone_id()),
    "worker: zone room": lambda w: admission.zone_room(get_zone_id()),
    "worker: CRL build": lambda w: crls.crl_refresh(authority_id=w.authority_id, force=True),
    "worker: rotation notices": lambda w: tasks.send_rotation_notices(),
    "worker: retiring portal CAs": lambda w: tasks.retire_authorities(),
}


@pytest.mark.parametrize("path", HOT_PATHS)
def test_it_reads_large_tables_through_indexes(world, path):
    with CaptureQueriesContext(connection) as captured:
        HOT_PATHS[path](world)
    statements = [query["sql"] for query in captured.captured_queries if touches_large_table(query["sql"])]
    assert statements, f"{path} sent no query to a large table: the entry no longer tests anything"

    with connection.cursor() as cursor:
        planning_without_whole_reads(cursor)
        reads = {sql: whole_reads(cursor, explained(cursor, sql), path=path) for sql in statements}
    offenders = {sql: found for sql, found in reads.items() if found}
    assert not offenders, "\n\n".join(f"{'; '.join(found)}:\n{sql}" for sql, found in offenders.items())


def test_it_finds_a_sequential_scan_where_no_index_serves(world):
    """The check itself: a query on an unindexed column of a large table is caught."""
    with connection.cursor() as cursor:
        planning_without_whole_reads(cursor)
        unindexed = Certificate.objects.filter(common_name="portal-user-1").order_by()
        # The key's second column alone: PostgreSQL can test it in the index, but reads all of the index to do so.
        second_column = Certificate.objects.filter(public_key_sha256="00" * 32).order_by()
        found = [
            whole_reads(cursor, explained(cursor, *rows.query.sql_with_params())) for rows in (unindexed, second_column)
        ]

    assert found == [
        ["Seq Scan on certificates_certificate"],
        ["all of index certificate_zone_public_key on certificates_certificate (no condition on zone_id)"],
    ]


def test_the_partial_indexes_follow_the_models_status_sets():
    """The Meta indexes spell the sets out (Meta cannot see them); a set that changes must change its index."""
    conditions = {index.name: index.condition for index in Certificate._meta.indexes if index.condition}

    assert status_values(conditions["certificate_usable_expiry"]) == set(Certificate.USABLE)
    assert status_values(conditions["certificate_zone_pending"]) == set(Certificate.PENDING)
    assert status_values(conditions["certificate_zone_slots"]) == set(Certificate.HOLDS_A_SLOT)


def status_values(condition) -> set[str]:
    return next(set(value) for key, value in condition.children if key == "status__in")


def touches_large_table(sql: str) -> bool:
    return sql.lstrip().upper().startswith(EXPLAINED) and any(f'"{table}"' in sql for table in LARGE_TABLES)


def explained(cursor, sql: str, params: tuple = ()) -> dict:
    cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params or None)
    plan = cursor.fetchone()[0]
    return (json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]


def planning_without_whole_reads(cursor) -> None:
    """For the test's transaction: a sequential scan only where nothing else can run the query, and joins by nested
    loop, whose inner side is an index lookup per row. (With the test's few rows, a merge join would read a whole
    index in order instead, which says nothing about the plan at scale.)"""
    for setting in ("enable_seqscan", "enable_hashjoin", "enable_mergejoin"):
        cursor.execute(f"SET LOCAL {setting} = off")


def whole_reads(cursor, plan: dict, *, path: str = "") -> list[str]:
    """How the plan reads a large table from end to end: a Seq Scan; an index scan with no condition (read for its
    order) that no LIMIT stops, unless the index is partial (it holds only the rows its predicate selects); or one
    whose condition leaves the index's first column free."""
    found = []
    for node, limited in nodes(plan):
        table, index = node.get("Relation Name"), node.get("Index Name")
        if node["Node Type"] == "Seq Scan" and table in LARGE_TABLES:
            found.append(f"Seq Scan on {table}")
        elif index and (path, index) not in WHOLE_READS_BY_DESIGN and index_table(cursor, index) in LARGE_TABLES:
            table = index_table(cursor, index)
            condition, (first, partial) = node.get("Index Cond", ""), index_shape(cursor, index)
            if not condition and not limited and not partial:
                found.append(f"all of index {index} on {table} (no condition, no LIMIT)")
            elif condition and first and not re.search(rf"\b{first}\b", condition):
                found.append(f"all of index {index} on {table} (no condition on {first})")
    return found


def nodes(plan: dict, limited: bool = False) -> Iterator[tuple[dict, bool]]:
    """Each node, and whether a LIMIT above it stops the reading early: not through a node that reads all of its
    input before its first row out (a sort, an aggregate, a hash)."""
    limited = (limited or plan["Node Type"] == "Limit") and plan["Node Type"] not in READ_ALL_FIRST
    yield plan, limited
    for child in plan.get("Plans", ()):
        yield from nodes(child, limited)


def index_table(cursor, index: str) -> str:
    cursor.execute("SELECT indrelid::regclass::text FROM pg_index WHERE indexrelid = %s::regclass", [index])
    return cursor.fetchone()[0]


def index_shape(cursor, index: str) -> tuple[str | None, bool]:
    """The index's first column (None when it is an expression), and whether it is partial."""
    cursor.execute(
        "SELECT a.attname, i.indpred IS NOT NULL FROM pg_index i "
        "LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
        "WHERE i.indexrelid = %s::regclass",
        [index],
    )
    first, partial = cursor.fetchone()
    return first, partial
