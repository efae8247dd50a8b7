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


def compiled(data: FirewallInputs, previous: Placement | None = None) -> list[DesiredRule]:
    result = compile_rules(data, prefix=PREFIX, max_rules=MAX_RULES, previous=previous)
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
    args = parser.parse_args()

    print(f"date: {datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')}")
    print(f"machine: nproc={os.cpu_count()}, {platform.machine()}, Python {platform.python_version()}")
    print(f"command: .venv/bin/python bench/bench_compile.py --runs {args.runs}")
    print(f"load average before the run: {' '.join(f'{load:.2f}' for load in os.getloadavg())}")
    print(f"median of {args.runs} runs, seconds (wall clock unless marked cpu)")
    columns = ("users", "fps", "rules", "allow", "bind", "cold", "cold-cpu", "warm", "warm-cpu", "validate")
    columns += ("placement",)
    print(" ".join(f"{column:>9}" for column in columns))
    for size in args.sizes:
        data = inputs(size)

        def cold(data: FirewallInputs = data) -> list:
            return compiled(data)

        cold_time, cold_cpu, rules = timed(cold, args.runs)
        zone = [(rule.ref, rule.expression, rule.description) for rule in rules]
        placement_time, _, previous = timed(lambda zone=zone: placement_of(zone), args.runs)
        changed = list(data.bindings)
        middle = len(changed) // 2
        changed[middle] = replace(changed[middle], networks=(*changed[middle].networks, "198.51.100.0/24"))
        changed_data = replace(data, bindings=tuple(changed))

        def warm(changed_data: FirewallInputs = changed_data, previous: Placement = previous) -> list:
            return compiled(changed_data, previous)

        warm(), warm()  # fill the allowlist cache, as a running worker has
        warm_time, warm_cpu, warm_rules = timed(warm, args.runs)
        differing = len(set(rules) ^ set(warm_rules)) // 2
        validate_time, _, _ = timed(lambda rules=rules: [validate(rule.expression) for rule in rules], args.runs)
        fingerprints = sum(len(binding.fingerprints) for binding in data.bindings)
        counts = (size, fingerprints, len(rules), count(rules, ALLOW), count(rules, BIND))
        times = (cold_time, cold_cpu, warm_time, warm_cpu, validate_time, placement_time)
        print(
            " ".join(f"{value:>9}" for value in counts),
            " ".join(f"{value:>9.3f}" for value in times),
            f"  (the warm run changed {differing} rule)",
        )


if __name__ == "__main__":
    main()
