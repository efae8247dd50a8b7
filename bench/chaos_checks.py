"""The invariants of a chaos run, read from the portal's database and the emulator's state file.

Nothing here calls Cloudflare's API (so checking never spends the rate limit or meets an injected fault): the
emulator's state comes from its --state file (written atomically), with its asynchronous revocations settled the
way the emulator settles them on read; the edge's verdicts come from POST /__emulator__/zones/{zone}/evaluate,
which is neither rate limited nor faulted.
"""

from __future__ import annotations

import ipaddress
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import requests
from chaos_stack import API_HOST, ZONE_ID

CHECKER_TOKEN = "chaos-checker"  # a bucket of its own at the emulator (it keys the rate limit by token)
CUSTOM_PHASE = "http_request_firewall_custom"
TRANSITION_DELAY = 5.0  # the emulator's --revocation-delay / --reactivation-delay in this run
IN_FLIGHT = ("issuing", "unconfirmed")
OUTSIDE_ADDRESS = "203.0.113.9"  # in no user's networks (bench/chaos.py draws them from 198.18.0.0/15)


@dataclass
class Invariants:
    orphans: int = 0  # at the emulator, unknown to the portal
    lost: int = 0  # active or pending rows the emulator does not have
    duplicate_rows: int = 0  # rows sharing one Cloudflare id
    duplicate_refs: int = 0  # rule refs appearing twice in the entrypoint
    status_mismatches: int = 0  # row status differs from the emulator's
    in_flight: int = 0  # rows still issuing / unconfirmed
    policy_mismatches: int | None = None  # None: not evaluated (something else was already wrong)
    carried_over: list[str] = field(default_factory=list)  # orphans an earlier scenario left, not counted again
    examples: list[str] = field(default_factory=list)
    orphan_ids: list[str] = field(default_factory=list)

    def consistent_but_policy(self) -> bool:
        counts = (self.orphans, self.lost, self.duplicate_rows, self.duplicate_refs, self.status_mismatches)
        return not any(counts) and not self.in_flight

    def consistent(self) -> bool:
        return self.consistent_but_policy() and self.policy_mismatches == 0

    def summary(self) -> str:
        policy = "not checked" if self.policy_mismatches is None else str(self.policy_mismatches)
        return (
            f"orphans {self.orphans}, lost rows {self.lost}, duplicate rows {self.duplicate_rows}, "
            f"duplicate rule refs {self.duplicate_refs}, status mismatches {self.status_mismatches}, "
            f"rows in flight {self.in_flight}, policy mismatches {policy}"
            + (f" (and {len(self.carried_over)} orphan(s) left by an earlier scenario)" if self.carried_over else "")
        )


def emulator_state(state_file: Path) -> dict[str, Any]:
    if not state_file.exists():  # written on the first call that changes something
        return {}
    zone: dict[str, Any] = json.loads(state_file.read_text())["zones"].get(ZONE_ID, {})
    now = time.time()
    for record in zone.get("client_certificates", {}).values():
        settle(record, now)
    return zone


def settle(record: dict[str, Any], now: float) -> None:
    """What the emulator does on read (client_certificates.settle): finish a transition whose delay passed."""
    targets = {"pending_revocation": "revoked", "pending_reactivation": "active"}
    if record["status"] in targets and now >= float(record["status_changed_at"]) + TRANSITION_DELAY:
        record["status"] = targets[record["status"]]


def portal_rows(database_url: str) -> tuple[list[dict[str, Any]], dict[int, list[str]], dict[int, bool]]:
    with psycopg.connect(database_url, autocommit=True) as connection:
        rows = connection.execute(
            "select id, owner_id, status, cloudflare_id, certificate_pem, expires_on from certificates_certificate"
        ).fetchall()
        entries = connection.execute("select owner_id, network from certificates_allowlistentry").fetchall()
        users = connection.execute("select id, is_active from auth_user").fetchall()
    keys = ("id", "user_id", "status", "cloudflare_id", "pem", "expires_on")
    networks: dict[int, list[str]] = {}
    for owner, network in entries:
        networks.setdefault(owner, []).append(network)
    return [dict(zip(keys, row, strict=True)) for row in rows], networks, dict(users)


def check(
    database_url: str,
    state_file: Path,
    emulator_url: str,
    *,
    policy: bool = True,
    known_orphans: frozenset[str] = frozenset(),
) -> Invariants:
    """The invariants now; `known_orphans` (left by an earlier scenario) are listed in carried_over, not counted."""
    rows, networks, users_active = portal_rows(database_url)
    zone = emulator_state(state_file)
    at_emulator: dict[str, dict[str, Any]] = zone.get("client_certificates", {})
    result = Invariants()
    by_cloudflare_id = Counter(row["cloudflare_id"] for row in rows if row["cloudflare_id"])
    result.duplicate_rows = sum(count - 1 for count in by_cloudflare_id.values() if count > 1)
    refs = Counter(rule.get("ref") for rule in entrypoint_rules(zone))
    result.duplicate_refs = sum(count - 1 for count in refs.values() if count > 1)
    for cloudflare_id, record in at_emulator.items():
        if cloudflare_id in known_orphans:
            result.carried_over.append(cloudflare_id)
        elif cloudflare_id not in by_cloudflare_id:
            result.orphans += 1
            result.orphan_ids.append(cloudflare_id)
            result.examples.append(f"orphan {cloudflare_id} ({record['status']}) at the emulator")
    for row in rows:
        compare_row(row, at_emulator, result)
    if policy and result.consistent_but_policy():
        result.policy_mismatches = policy_mismatches(rows, networks, users_active, emulator_url, result)
    return result


def compare_row(row: dict[str, Any], at_emulator: dict[str, dict[str, Any]], result: Invariants) -> None:
    status, cloudflare_id = row["status"], row["cloudflare_id"]
    if status in IN_FLIGHT:
        result.in_flight += 1
        result.examples.append(f"row {row['id']} still {status}")
        return
    record = at_emulator.get(cloudflare_id) if cloudflare_id else None
    if record is None:
        if status not in ("failed",):
            result.lost += 1
            result.examples.append(f"row {row['id']} {status} with no certificate at the emulator")
        return
    if record["status"] != status:
        result.status_mismatches += 1
        result.examples.append(f"row {row['id']} is {status}, the emulator says {record['status']}")


def entrypoint_rules(zone: dict[str, Any]) -> list[dict[str, Any]]:
    for ruleset in zone.get("rulesets", {}).values():
        if ruleset.get("kind") == "zone" and ruleset.get("phase") == CUSTOM_PHASE:
            return list(ruleset.get("rules", []))
    return []


def policy_mismatches(
    rows: list[dict[str, Any]],
    networks: dict[int, list[str]],
    users_active: dict[int, bool],
    emulator_url: str,
    result: Invariants,
) -> int:
    """Each certificate from an address in its owner's networks and one outside, against what the database says."""
    mismatches = 0
    session = requests.Session()
    now = datetime.now(UTC)
    for row in rows:
        if not row["pem"] or row["status"] == "failed":
            continue
        owner_networks = networks.get(row["user_id"], [])
        usable = row["status"] == "active" and users_active.get(row["user_id"], False) and row["expires_on"] > now
        inside = inside_address(owner_networks)
        probes = [(inside, usable)]
        if usable:
            probes.append((OUTSIDE_ADDRESS, not owner_networks))
        for address, allowed in probes:
            outcome = evaluate(session, emulator_url, row["pem"], address)
            if (outcome == "allowed") != allowed:
                mismatches += 1
                expected = "allowed" if allowed else "blocked"
                seen = f"row {row['id']} ({row['status']}) from {address}: {outcome}"
                result.examples.append(f"{seen}, expected {expected}")
    return mismatches


def inside_address(owner_networks: list[str]) -> str:
    if not owner_networks:
        return "192.0.2.44"
    return str(next(ipaddress.ip_network(owner_networks[0]).hosts()))


def evaluate(session: requests.Session, emulator_url: str, pem: str, address: str) -> str:
    answer = session.post(
        f"{emulator_url}/__emulator__/zones/{ZONE_ID}/evaluate",
        json={"host": API_HOST, "ip": address, "certificate": pem},
        headers={"Authorization": f"Bearer {CHECKER_TOKEN}"},
        timeout=30,
    )
    answer.raise_for_status()
    return str(answer.json()["result"]["outcome"])
