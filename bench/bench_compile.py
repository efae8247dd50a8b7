"""Benchmark of the firewall rule compiler (certificates/firewall/compiler.py).

Run: .venv/bin/python bench/bench_compile.py [--runs N]

For each size: N users with 10 usable certificates each and 1 to 3 networks (distinct per user, IPv4 and
IPv6, the worst case for the allowlist cache); every one of the 10 N fingerprints is allowed, so it is listed
in an allow rule and, as every user has an allowlist, in a binding rule too. Reports the rule counts
(allow ranges, binding rules) and the median of several runs of:
  cold      compile_rules with no previous placement and an empty allowlist cache (first sync of a worker)
  warm      compile_rules with previous = placement_of(rules now in the zone), one user changed (a sync)
  validate  the part of either that is Cloudflare's parser: validate() over the finished expressions
  placement placement_of over the rules as they are in the zone
Sizes beyond 1,000 rules exceed every Cloudflare plan; they are here to measure speed, so max_rules is large.

Then the portal CA (issue #11): 10,000 users with 3 portal-CA certificates each, every user with an allowlist of 1
to 3 networks (the same mix), 1,000 revoked certificates that have not expired (deny rules), and 100 managed-CA
certificates (held by 100 of the users, so also in their binding clauses), compiled for Enterprise's 1,000 rules.
Reports the rules by kind and the median of:
  cold      compile_rules with no previous placement and an empty allowlist cache
  warm      one user's allowlist changed, with the placement of the rules in the zone (a sync)
  revoke    one more certificate revoked (its serial joins a deny rule), likewise
and, with --database, the sync's reading of that zone from the database (certificates.firewall.sync.
firewall_inputs, SQLite in a temporary directory, as bench/harness.py sets it up): 50,000 certificates (the
30,000 usable, 1,000 revoked and 100 managed-CA ones above, and 18,900 portal-CA ones that expired or were
revoked and expired), 10,000 owner tags, 20,000 allowlist entries.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import random
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from certificates.firewall import compiler
from certificates.firewall.compiler import (
    ALLOW,
    BIND,
    DENY,
    ISSUER,
    DesiredRule,
    FirewallInputs,
    Placement,
    UserBinding,
    compile_rules,
    placement_of,
)
from cloudflare.expressions import validate

HOSTNAMES = ("api.example.com", "api-eu.example.com")
MAX_RULES = 100_000
PREFIX = "mtls_portal_"
ENTERPRISE_RULES = 1_000  # FACTS.md §7
PORTAL_SKI = "8204924CF49D471E855862706D889F58F6B784D3"
MARKER = "1A2B3C4D"


def fingerprint(rng: random.Random) -> str:
    return rng.getrandbits(256).to_bytes(32, "big").hex()


def network(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.4:
        return f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.0/24"
    if kind < 0.7:
        return f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    return f"2001:db8:{rng.randint(0, 0xFFFF):x}:{rng.randint(0, 0xFFFF):x}::/64"


def inputs(users: int, seed: int = 1) -> FirewallInputs:
    rng = random.Random(seed)
    bindings = tuple(
        UserBinding(
            user_id=user_id,
            fingerprints=tuple(fingerprint(rng) for _ in range(10)),
            networks=tuple(sorted({network(rng) for _ in range(rng.randint(1, 3))})),
        )
        for user_id in range(1, users + 1)
    )
    allowed = tuple(fp for binding in bindings for fp in binding.fingerprints)
    return FirewallInputs(hostnames=HOSTNAMES, allowed_fingerprints=allowed, bindings=bindings)


def portal_inputs(users: int = 10_000, revoked: int = 1_000, managed: int = 100, seed: int = 2) -> FirewallInputs:
    """Portal-CA certificates are bound by their owner's serial prefix (zone marker and owner tag), whatever their
    number, so the three each user holds need no input of their own here: one prefix stands for them."""
    rng = random.Random(seed)
    tags = [f"{tag:08X}" for tag in rng.sample(range(2**32), users)]
    managed_fingerprints = {user: (fingerprint(rng),) for user in rng.sample(range(users), managed)}
    bindings = tuple(
        UserBinding(
            user_id=index + 1,
            fingerprints=managed_fingerprints.get(index, ()),
            networks=tuple(sorted({network(rng) for _ in range(rng.randint(1, 3))})),
            serial_prefix=MARKER + tag,
        )
        for index, tag in enumerate(tags)
    )
    denied = tuple(MARKER + rng.choice(tags) + f"{rng.getrandbits(80):020X}" for _ in range(revoked))
    return FirewallInputs(
        hostnames=HOSTNAMES,
        allowed_fingerprints=tuple(fp for fps in managed_fingerprints.values() for fp in fps),
        bindings=bindings,
        portal_issuers=(PORTAL_SKI,),
        serial_marker=MARKER,
        denied_serials=denied,
    )


def compiled(data: FirewallInputs, previous: Placement | None = None, max_rules: int = MAX_RULES) -> list[DesiredRule]:
    result = compile_rules(data, prefix=PREFIX, max_rules=max_rules, previous=previous)
    assert not result.left_out, "max_rules is meant to be out of reach"
    return result.rules


def count(rules: list[DesiredRule], kind: str) -> int:
    return sum(1 for rule in rules if rule.ref.startswith(f"{PREFIX}{kind}_"))


def timed(function, runs: int) -> tuple[float, float, object]:
    """Median wall-clock and CPU seconds (the machine is shared; CPU time is less disturbed by others)."""
    wall, cpu, result = [], [], None
    for _ in range(runs):
        if function.__name__ == "cold":
            compiler.clear_caches()
        start, start_cpu = time.perf_counter(), time.process_time()
        result = function()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="*", default=[100, 1_000, 5_000, 10_000])
    parser.add_argument("--portal-ca-only", action="store_true", help="only the portal CA scenario")
    parser.add_argument("--database", action="store_true", help="also time reading the portal CA zone's inputs")
    args = parser.parse_args()

    print(f"date: {datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')}")
    print(f"machine: nproc={os.cpu_count()}, {platform.machine()}, Python {platform.python_version()}")
    print(f"command: .venv/bin/python bench/bench_compile.py --runs {args.runs}")
    print(f"load average before the run: {' '.join(f'{load:.2f}' for load in os.getloadavg())}")
    print(f"median of {args.runs} runs, seconds (wall clock unless marked cpu)")
    if not args.portal_ca_only:
        managed_ca(args.sizes, args.runs)
    portal_ca(args.runs)
    if args.database:
        database_inputs(args.runs)


def managed_ca(sizes: list[int], runs: int) -> None:
    columns = ("users", "fps", "rules", "allow", "bind", "cold", "cold-cpu", "warm", "warm-cpu", "validate")
    columns += ("placement",)
    print(" ".join(f"{column:>9}" for column in columns))
    for size in sizes:
        data = inputs(size)

        def cold(data: FirewallInputs = data) -> list:
            return compiled(data)

        cold_time, cold_cpu, rules = timed(cold, runs)
        zone = [(rule.ref, rule.expression, rule.description) for rule in rules]
        placement_time, _, previous = timed(lambda zone=zone: placement_of(zone), runs)
        changed = list(data.bindings)
        middle = len(changed) // 2
        changed[middle] = replace(changed[middle], networks=(*changed[middle].networks, "198.51.100.0/24"))
        changed_data = replace(data, bindings=tuple(changed))

        def warm(changed_data: FirewallInputs = changed_data, previous: Placement = previous) -> list:
            return compiled(changed_data, previous)

        warm(), warm()  # fill the allowlist cache, as a running worker has
        warm_time, warm_cpu, warm_rules = timed(warm, runs)
        differing = len(set(rules) ^ set(warm_rules)) // 2
        validate_time, _, _ = timed(lambda rules=rules: [validate(rule.expression) for rule in rules], runs)
        fingerprints = sum(len(binding.fingerprints) for binding in data.bindings)
        counts = (size, fingerprints, len(rules), count(rules, ALLOW), count(rules, BIND))
        times = (cold_time, cold_cpu, warm_time, warm_cpu, validate_time, placement_time)
        print(
            " ".join(f"{value:>9}" for value in counts),
            " ".join(f"{value:>9.3f}" for value in times),
            f"  (the warm run changed {differing} rule)",
        )


def portal_ca(runs: int) -> None:
    data = portal_inputs()

    def cold(data: FirewallInputs = data) -> list:
        return compiled(data, max_rules=ENTERPRISE_RULES)

    cold_time, cold_cpu, rules = timed(cold, runs)
    previous = placement_of((rule.ref, rule.expression, rule.description) for rule in rules)
    changed = list(data.bindings)
    middle = len(changed) // 2
    changed[middle] = replace(changed[middle], networks=(*changed[middle].networks, "2001:db8:abcd::/48"))
    one_user = replace(data, bindings=tuple(changed))
    extra = MARKER + changed[middle].serial_prefix[8:] + "0" * 20
    one_revoked = replace(data, denied_serials=(*data.denied_serials, extra))

    def warm(one_user: FirewallInputs = one_user) -> list:
        return compiled(one_user, previous, max_rules=ENTERPRISE_RULES)

    def revoke(one_revoked: FirewallInputs = one_revoked) -> list:
        return compiled(one_revoked, previous, max_rules=ENTERPRISE_RULES)

    warm()  # fill the allowlist cache, as a running worker has
    warm_time, warm_cpu, warm_rules = timed(warm, runs)
    revoke_time, revoke_cpu, revoke_rules = timed(revoke, runs)
    kinds = (sum(1 for rule in rules if rule.ref == PREFIX + ISSUER), *(count(rules, k) for k in (DENY, ALLOW, BIND)))
    print()
    print("portal CA: 10,000 users x 3 portal-CA certificates, all with allowlists; 1,000 revoked; 100 managed-CA")
    columns = ("rules", "issuer", "deny", "allow", "bind", "cold", "cold-cpu", "warm", "warm-cpu", "revoke")
    columns += ("revoke-cpu",)
    print(" ".join(f"{column:>9}" for column in columns))
    times = (cold_time, cold_cpu, warm_time, warm_cpu, revoke_time, revoke_cpu)
    print(
        " ".join(f"{value:>9}" for value in (len(rules), *kinds)),
        " ".join(f"{value:>9.3f}" for value in times),
        f"  (of the {ENTERPRISE_RULES:,} rules of Enterprise; rules rewritten: the warm run "
        f"{len(set(rules) ^ set(warm_rules)) // 2}, the revoke run {len(set(rules) ^ set(revoke_rules)) // 2})",
    )


def database_inputs(runs: int) -> None:
    from harness import setup_django

    setup_django()
    from certificates.firewall.sync import firewall_inputs

    zone = "2" * 32
    rows = populate_portal_zone(zone)
    seconds, cpu, data = timed(lambda: firewall_inputs(zone_id=zone), runs)
    assert isinstance(data, FirewallInputs)
    print()
    print(f"reading the portal CA zone from the database ({rows:,} certificates, SQLite): firewall_inputs")
    print(f"{'seconds':>9} {'cpu':>9} {'bindings':>9} {'denied':>9} {'allowed':>9}")
    print(
        f"{seconds:>9.3f} {cpu:>9.3f} {len(data.bindings):>9} {len(data.denied_serials):>9} "
        f"{len(data.allowed_fingerprints):>9}"
    )


def populate_portal_zone(zone: str, users: int = 10_000, seed: int = 3) -> int:
    """The portal CA scenario's zone as rows: returns how many certificates it holds."""
    from datetime import timedelta

    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from certificates.models import AllowlistEntry, Certificate, CertificateAuthority, OwnerSerialTag, Zone

    rng = random.Random(seed)
    now = timezone.now()
    Zone.objects.create(zone_id=zone, serial_marker=MARKER)
    authority = CertificateAuthority.objects.create(
        name="bench",
        status=CertificateAuthority.Status.TRUSTED,
        key_algorithm="ec-p256",
        certificate_pem="-",
        encrypted_key="-",
        subject_key_identifier=PORTAL_SKI,
        subject="CN=bench",
        not_before=now,
        not_after=now + timedelta(days=3650),
    )
    user_model = get_user_model()
    owners = user_model.objects.bulk_create(
        [user_model(username=f"bench{n}", email=f"bench{n}@example.com") for n in range(users)], batch_size=2000
    )
    tags = [f"{tag:08X}" for tag in rng.sample(range(2**32), users)]
    OwnerSerialTag.objects.bulk_create(
        [OwnerSerialTag(user=owner, tag=tag) for owner, tag in zip(owners, tags, strict=True)], batch_size=2000
    )
    AllowlistEntry.objects.bulk_create(
        [
            AllowlistEntry(owner=owner, network=net)
            for owner in owners
            for net in {network(rng) for _ in range(rng.randint(1, 3))}
        ],
        batch_size=2000,
    )

    def row(index: int, status: str, days: int, managed: bool = False) -> Certificate:
        owner = owners[index % users]
        return Certificate(
            owner=owner,
            name="bench",
            zone_id=zone,
            authority=None if managed else authority,
            status=status,
            csr="-",
            public_key_sha256="0" * 64,
            key_type="ec-p256",
            common_name=f"portal-user-{owner.pk}",
            validity_days=30,
            fingerprint_sha256=fingerprint(rng),
            serial_number="" if managed else MARKER + tags[index % users] + f"{rng.getrandbits(80):020X}",
            expires_on=now + timedelta(days=days),
        )

    active, revoked = Certificate.Status.ACTIVE, Certificate.Status.REVOKED
    certificates = [row(index, active, 30) for index in range(3 * users)]
    certificates += [row(rng.randrange(users), revoked, 30) for _ in range(1_000)]
    certificates += [row(rng.randrange(users), active, 300, managed=True) for _ in range(100)]
    certificates += [row(rng.randrange(users), rng.choice([active, revoked]), -1) for _ in range(18_900)]
    Certificate.objects.bulk_create(certificates, batch_size=2000)
    return len(certificates)


if __name__ == "__main__":
    main()
