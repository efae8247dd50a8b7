"""Cloudflare calls and bytes of a firewall sync (issue 4 and issue 8 targets):

- nothing changed: 1 read, 0 writes;
- one user's allowlist changed: 1 read, 1 write;
- first sync into a zone with no entrypoint: 1 read, 1 create carrying every rule;
- first sync into an entrypoint that already has rules (1,000 and 10,000 users): at most 3 calls, bytes linear
  in the ruleset size (the read, the read again just before the write, one PUT of the whole entrypoint).

Bytes are request plus response bodies, counted on the client's requests.Session (harness.count_traffic).
"old way" runs the same first sync with single-rule writes only (SINGLE_WRITES_AT_MOST out of reach), as the
sync did before issue 8, for comparison: each single-rule answer carries the whole ruleset.

Two zones: 1,000 users with 5 certificates each, and 10,000 users with 1 certificate each (5 each would need
about 1,700 allow rules, over Enterprise's 1,000). Every user has an allowlist. The rule limit is Enterprise's
1,000, in the portal's settings and in the emulator; the 10 rules of another team count against it.

Run: .venv/bin/python bench/bench_sync.py
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from harness import Call, count_traffic, header, setup_django, use_emulator, write_result

RULES_LIMIT = 1000  # Enterprise (FACTS.md §7)
FOREIGN_RULES = 10
SMALL = (1_000, 5)  # users, certificates each
LARGE = (10_000, 1)
LARGE_ZONE = "1" * 32
COMMAND = ".venv/bin/python bench/bench_sync.py"
# Ratio of bytes sent and received to the size of the ruleset the sync leaves: the target's "linear".
LINEAR_AT_MOST = 3.0


@dataclass
class Row:
    label: str
    calls: list[Call]
    ruleset_bytes: int
    rules: int
    changed: int
    mode: str
    seconds: float
    target: Target | None

    @property
    def reads(self) -> int:
        return sum(1 for call in self.calls if call.method == "GET")

    @property
    def writes(self) -> int:
        return len(self.calls) - self.reads

    @property
    def bytes(self) -> int:
        return sum(call.sent + call.received for call in self.calls)

    @property
    def times_size(self) -> float:
        return self.bytes / self.ruleset_bytes

    def line(self) -> str:
        sent = sum(call.sent for call in self.calls)
        received = sum(call.received for call in self.calls)
        verdict = (
            "" if self.target is None else f"  {self.target.text}: {'met' if self.target.met(self) else 'NOT MET'}"
        )
        return (
            f"{self.label:<62} {len(self.calls):>5} {self.reads:>5} {self.writes:>6} {sent / 1000:>9.1f} "
            f"{received / 1000:>10.1f} {self.times_size:>6.1f} {self.ruleset_bytes / 1000:>8.1f} {self.rules:>5} "
            f"{self.changed:>7} {self.mode:>7} {self.seconds:>7.2f}{verdict}"
        )


@dataclass(frozen=True)
class Target:
    text: str
    met: Callable[[Row], bool]


NOTHING_CHANGED = Target("target 1 read, 0 writes", lambda row: (row.reads, row.writes) == (1, 0))
ONE_CHANGE = Target("target 1 read, 1 write", lambda row: (row.reads, row.writes) == (1, 1))
NO_ENTRYPOINT = Target("target 1 read, 1 create", lambda row: (row.reads, row.writes, row.mode) == (1, 1, "create"))
WITH_RULES = Target(
    f"target at most 3 calls, bytes at most {LINEAR_AT_MOST:g} x size",
    lambda row: len(row.calls) <= 3 and row.times_size <= LINEAR_AT_MOST,
)

COLUMNS = (
    f"{'case':<62} {'calls':>5} {'reads':>5} {'writes':>6} {'sent kB':>9} {'recvd kB':>10} {'x size':>6} "
    f"{'size kB':>8} {'rules':>5} {'changed':>7} {'mode':>7} {'seconds':>7}"
)

NOTE = f"""
Set-up: every user has an allowlist (one network) and active certificates; 1,000 users x 5 certificates, and
10,000 users x 1 certificate (5 each would need about 1,700 allow rules, over the limit). The rule limit is
Enterprise's {RULES_LIMIT:,} in the portal's settings and in the emulator; every rule fits, none is left out.
"{FOREIGN_RULES} foreign rules": an entrypoint that already holds {FOREIGN_RULES} rules of another team.

calls: HTTP calls to Cloudflare during the sync (reads are GETs); sent / recvd kB: request and response bodies,
in thousands of bytes; size kB: the entrypoint's size as a GET returns it after the sync, with its rules
(the portal's and the other team's); x size: (sent + recvd) / size; changed: the portal's rules added,
updated, deleted or moved; mode: how the sync wrote (create: the entrypoint did not exist; replace: read
again, then one PUT of the whole entrypoint; rules: single-rule writes). Seconds are wall clock on the
in-process emulator, so they leave out the network.

Every single-rule answer carries the whole ruleset (FACTS.md §8), so a sync that writes rule by rule receives
the ruleset once a write: quadratic in the ruleset's size for a first sync. The replacement sends it once and
receives it once, plus two reads of the entrypoint as it was: about 2 x size at every size, linear (the
target allows {LINEAR_AT_MOST:g} x). Single-rule writes grow with rules x size.
"""


def populate(zone: str, users: int, certificates: int, first: int) -> list:  # type: ignore[type-arg]
    """Users user<first>... with `certificates` active certificates each in `zone` and one allowlist network."""
    from django.contrib.auth import get_user_model

    from certificates.models import AllowlistEntry, Certificate

    user_model = get_user_model()
    created = user_model.objects.bulk_create(
        [user_model(username=f"user{n}", email=f"user{n}@example.com") for n in range(first, first + users)]
    )
    Certificate.objects.bulk_create(
        [
            Certificate(
                owner=user,
                name=f"c{k}",
                zone_id=zone,
                status=Certificate.Status.ACTIVE,
                cloudflare_id=f"{user.pk:08x}-0000-4000-8000-{k:012x}",
                csr="-",
                public_key_sha256=hashlib.sha256(f"{user.pk}/{k}".encode()).hexdigest(),
                key_type="ec-p256",
                common_name=f"portal-user-{user.pk}",
                validity_days=365,
                fingerprint_sha256=hashlib.sha256(f"fp/{user.pk}/{k}".encode()).hexdigest(),
            )
            for user in created
            for k in range(certificates)
        ],
        batch_size=2000,
    )
    AllowlistEntry.objects.bulk_create(
        [AllowlistEntry(owner=user, network=f"{20 + user.pk // 250}.{user.pk % 250}.0.0/16") for user in created],
        batch_size=2000,
    )
    return created


def main() -> None:
    setup_django()
    from django.conf import settings

    from certificates.cloudflare_client import get_cloudflare_client
    from certificates.firewall import sync
    from certificates.models import AllowlistEntry, Certificate
    from cloudflare.models import RuleSpec

    settings.PORTAL_API_HOSTNAMES = ["api.example.com"]
    settings.CLOUDFLARE_CUSTOM_RULES_LIMIT = RULES_LIMIT
    calls = count_traffic()
    rows: list[Row] = []
    savings: list[str] = []

    def fresh_zone(zone: str, *, foreign: bool) -> None:
        use_emulator(zone_capacity=100_000, custom_rules_limit=RULES_LIMIT)
        if foreign:
            rules = [
                RuleSpec(
                    ref=f"other_team_{n}", expression=f'http.request.uri.path eq "/old/{n}"', description="other team"
                )
                for n in range(FOREIGN_RULES)
            ]
            get_cloudflare_client().create_entrypoint(zone, rules=rules)

    def measure(label: str, zone: str, target: Target | None = None) -> None:
        start = len(calls)
        started = time.perf_counter()
        plan = sync.firewall_sync(zone_id=zone)
        elapsed = time.perf_counter() - started
        measured = calls[start:]
        entrypoint = get_cloudflare_client().get_entrypoint(zone)  # not part of the sync: the size it leaves
        assert entrypoint is not None
        assert not plan.left_out, "every rule is meant to fit"
        ours = [rule.ref.startswith(settings.PORTAL_RULE_REF_PREFIX) for rule in entrypoint.rules]
        assert ours == sorted(ours, reverse=True), "the portal's rules come first"
        changed = len(plan.add) + len(plan.update) + len(plan.delete) + len(plan.moves)
        ruleset_bytes = calls[-1].received
        rows.append(Row(label, measured, ruleset_bytes, len(entrypoint.rules), changed, plan.mode, elapsed, target))
        print(rows[-1].line(), flush=True)

    def first_syncs(zone: str, size: tuple[int, int]) -> None:
        users, certificates = size
        what = f"{users:,} users x {certificates}"
        fresh_zone(zone, foreign=False)
        measure(f"first sync, {what}, no entrypoint yet", zone, NO_ENTRYPOINT)
        fresh_zone(zone, foreign=True)
        measure(f"first sync, {what}, entrypoint with {FOREIGN_RULES} foreign rules", zone, WITH_RULES)
        new_way = rows[-1]
        fresh_zone(zone, foreign=True)
        single_writes = sync.SINGLE_WRITES_AT_MOST
        sync.SINGLE_WRITES_AT_MOST = 10**9
        try:
            measure("  the same, old way: single-rule writes only", zone)
        finally:
            sync.SINGLE_WRITES_AT_MOST = single_writes
        old_way = rows[-1]
        savings.append(
            f"{what}: the replacement moves {new_way.bytes / 1e6:.1f} MB in {len(new_way.calls)} calls where "
            f"single-rule writes move {old_way.bytes / 1e6:.1f} MB in {len(old_way.calls)} calls "
            f"({old_way.bytes / new_way.bytes:.0f} times the bytes)."
        )

    print(COLUMNS, flush=True)
    small_zone = settings.CLOUDFLARE_ZONE_ID
    small_users = populate(small_zone, *SMALL, first=0)
    first_syncs(small_zone, SMALL)
    measure("nothing changed", small_zone, NOTHING_CHANGED)
    AllowlistEntry.objects.filter(owner=small_users[500]).update(network="9.9.0.0/16")
    measure("one user's allowlist changed", small_zone, ONE_CHANGE)
    Certificate.objects.filter(owner=small_users[10], name="c0").update(status=Certificate.Status.PENDING_REVOCATION)
    measure("one certificate revoked (its allow range and binding rule)", small_zone)

    large_users = populate(LARGE_ZONE, *LARGE, first=SMALL[0])
    first_syncs(LARGE_ZONE, LARGE)
    measure("nothing changed", LARGE_ZONE, NOTHING_CHANGED)
    AllowlistEntry.objects.filter(owner=large_users[5000]).update(network="9.9.0.0/16")
    measure("one user's allowlist changed", LARGE_ZONE, ONE_CHANGE)

    write_result(
        "sync.txt",
        header("Firewall sync: Cloudflare calls and bytes per sync, counted on the client's session", COMMAND)
        + COLUMNS
        + "\n"
        + "\n".join(row.line() for row in rows)
        + "\n"
        + NOTE
        + "\n".join(savings)
        + "\n",
    )


if __name__ == "__main__":
    main()
