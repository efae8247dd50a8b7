"""Tests for the firewall rule compiler: what the compiled rules block, read from their text."""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass, field, replace
from functools import lru_cache

import octorules_wirefilter
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from certificates.firewall.compiler import (
    DesiredRule,
    FirewallCompileError,
    FirewallInputs,
    RuleBudgetExceeded,
    UserBinding,
    allowlist_fits,
    compile_rules,
    placement_of,
)
from cloudflare.expressions import CERT_FINGERPRINT_SHA256, MAX_EXPRESSION_LENGTH, StringSet, validate
from cloudflare_emulator import evaluator
from cloudflare_emulator.evaluator import Request

PREFIX = "mtls_portal_"
PROTECTED_POOL = ("api.example.com", "api-eu.example.com", "mtls.example.net")
OTHER_HOST = "www.example.com"
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


# --- A model of the portal's state and the decision it intends ------------------------------------------


@dataclass
class User:
    user_id: int
    usable: list[str]
    denied: list[str]
    networks: list[IPNetwork]


@dataclass
class World:
    hostnames: list[str]
    users: list[User]
    orphan_denied: list[str] = field(default_factory=list)  # e.g. a deactivated user's certificates

    def inputs(self) -> FirewallInputs:
        return FirewallInputs(
            hostnames=tuple(self.hostnames),
            allowed_fingerprints=tuple(fp for user in self.users for fp in user.usable),
            bindings=tuple(
                UserBinding(user.user_id, tuple(user.usable), tuple(str(network) for network in user.networks))
                for user in self.users
                if user.networks
            ),
        )

    def blocks(self, request: Request) -> bool:
        if request.host not in self.hostnames:
            return False
        if not request.verified or request.revoked:
            return True
        for user in self.users:
            if request.fingerprint in user.usable:
                return bool(user.networks) and not any(contains(network, request.ip) for network in user.networks)
        return True  # only the portal's usable certificates pass: denied, unknown and foreign ones do not


def contains(network: IPNetwork, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return network.version == address.version and address in network


@lru_cache(maxsize=4096)
def parsed(expression: str) -> object:
    return evaluator.parse(expression)


def blocked(rules: list[DesiredRule], request: Request) -> bool:
    fields = request.fields()
    return any(evaluator.evaluate(parsed(rule.expression), fields) for rule in rules)


def compile_world(world: World, previous: list[DesiredRule] | None = None, max_rules: int = 1000) -> list[DesiredRule]:
    placement = placement_of((rule.ref, rule.expression, rule.description) for rule in previous or [])
    compiled = compile_rules(world.inputs(), prefix=PREFIX, max_rules=max_rules, previous=placement)
    assert not compiled.left_out
    check_rules(compiled.rules)
    return compiled.rules


def check_rules(rules: list[DesiredRule]) -> None:
    """Every rule: ours, a block, within Cloudflare's limit, accepted by its parser, scoped to the hostnames."""
    refs = [rule.ref for rule in rules]
    assert len(set(refs)) == len(refs)
    for rule in rules:
        assert rule.ref.startswith(PREFIX)
        assert rule.action == "block"
        assert len(rule.expression) <= MAX_EXPRESSION_LENGTH
        validate(rule.expression)
        assert "error" not in octorules_wirefilter.parse_expression(rule.expression)
        assert rule.expression.startswith("((lower(http.host) in {")  # every rule is scoped to the API hostnames


# --- Strategies ------------------------------------------------------------------------------------------

fingerprints = st.binary(min_size=32, max_size=32).map(bytes.hex)


@st.composite
def ip_networks(draw: st.DrawFn) -> IPNetwork:
    address = draw(st.ip_addresses())
    low = 8 if address.version == 4 else 16
    prefix = draw(st.integers(min_value=low, max_value=address.max_prefixlen))
    return ipaddress.ip_network(f"{address}/{prefix}", strict=False)


@st.composite
def worlds(draw: st.DrawFn, max_users: int = 6, max_certificates: int = 6) -> World:
    hostnames = draw(st.lists(st.sampled_from(PROTECTED_POOL), min_size=1, unique=True))
    user_ids = draw(st.lists(st.integers(1, 10**6), max_size=max_users, unique=True))
    shape = [
        (
            draw(st.integers(0, max_certificates)),
            draw(st.integers(0, 2)),
            draw(st.lists(ip_networks(), max_size=3)),
        )
        for _ in user_ids
    ]
    orphans = draw(st.integers(0, 3))
    total = sum(usable + denied for usable, denied, _ in shape) + orphans
    pool = draw(st.lists(fingerprints, min_size=total, max_size=total, unique=True))
    users = []
    for user_id, (usable, denied, networks) in zip(user_ids, shape, strict=True):
        users.append(User(user_id, pool[:usable], pool[usable : usable + denied], networks))
        pool = pool[usable + denied :]
    return World(hostnames=hostnames, users=users, orphan_denied=pool)


@st.composite
def requests_for(draw: st.DrawFn, world: World) -> Request:
    host = draw(st.sampled_from([*world.hostnames, OTHER_HOST]))
    known = [fp for user in world.users for fp in user.usable + user.denied] + world.orphan_denied
    fingerprint = draw(st.one_of(st.sampled_from(known), fingerprints, st.just(""))) if known else draw(fingerprints)
    owner_networks = [n for user in world.users if fingerprint in user.usable + user.denied for n in user.networks]
    if owner_networks and draw(st.booleans()):
        network = draw(st.sampled_from(owner_networks))
        ip = network[draw(st.integers(0, network.num_addresses - 1))]
    else:
        ip = draw(st.ip_addresses())
    verified = draw(st.booleans()) if not fingerprint else draw(st.sampled_from([True, True, True, False]))
    revoked = verified and draw(st.sampled_from([False, False, False, True]))
    return Request(host=host, ip=ip, verified=verified, revoked=revoked, fingerprint=fingerprint)


# --- What the rules block --------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), world=worlds())
def test_it_blocks_exactly_what_the_portal_intends(data: st.DataObject, world: World) -> None:
    rules = compile_world(world)
    for _ in range(15):
        request = data.draw(requests_for(world))
        assert blocked(rules, request) == world.blocks(request), (request, [rule.expression for rule in rules])


@settings(max_examples=60, deadline=None)
@given(data=st.data(), world=worlds())
def test_it_never_blocks_a_hostname_outside_the_protected_set(data: st.DataObject, world: World) -> None:
    rules = compile_world(world)
    request = replace(data.draw(requests_for(world)), host=OTHER_HOST)
    assert not blocked(rules, request)
    assert not blocked(rules, replace(request, verified=False))


@settings(max_examples=40, deadline=None)
@given(world=worlds(max_users=3))
def test_it_gives_each_case_its_decision(world: World) -> None:
    rules = compile_world(world)
    host = world.hostnames[0]
    anywhere = [ipaddress.ip_address("203.0.113.9"), ipaddress.ip_address("2001:db8:ffff::1")]
    for ip in anywhere:
        assert blocked(rules, Request(host=host, ip=ip, verified=False))  # unknown certificate
        assert blocked(rules, Request(host=host, ip=ip, verified=False, fingerprint="a" * 64))
        assert blocked(rules, Request(host=host, ip=ip, revoked=True, fingerprint="b" * 64))  # verified, revoked
        assert blocked(rules, Request(host=host, ip=ip, fingerprint="c" * 64))  # verified, not the portal's
    for user in world.users:
        for fp in user.denied:
            for ip in [*anywhere, *(network.network_address for network in user.networks)]:
                assert blocked(rules, Request(host=host, ip=ip, fingerprint=fp))
        for fp in user.usable:
            for network in user.networks:
                assert not blocked(rules, Request(host=host, ip=network.network_address, fingerprint=fp))
                assert not blocked(rules, Request(host=host, ip=network[-1], fingerprint=fp))
            for ip in anywhere:
                outside = user.networks and not any(contains(network, ip) for network in user.networks)
                assert blocked(rules, Request(host=host, ip=ip, fingerprint=fp)) == bool(outside)


@settings(max_examples=40, deadline=None)
@given(world=worlds(max_users=3), data=st.data())
def test_the_hosts_case_does_not_matter(world: World, data: st.DataObject) -> None:
    """A client picks the case of its Host header; the rules decide the same for every spelling."""
    rules = compile_world(world)
    request = data.draw(requests_for(world))
    shouted = replace(request, host=request.host.upper())
    mixed = replace(request, host="".join(c.upper() if i % 2 else c for i, c in enumerate(request.host)))
    assert blocked(rules, shouted) == blocked(rules, mixed) == world.blocks(request)


@settings(max_examples=40, deadline=None)
@given(
    world=worlds(max_users=3),
    data=st.data(),
    dot=st.booleans(),
    port=st.sampled_from(["", ":443", ":8443", ":80", ":1", ":0443", ":65535", ":"]),
)
def test_a_trailing_dot_or_a_port_in_the_host_does_not_escape_the_rules(
    world: World, data: st.DataObject, dot: bool, port: str
) -> None:
    """http.host is the Host header as sent (FACTS.md §14): "api.example.com.:8443" is still the API."""
    rules = compile_world(world)
    request = data.draw(requests_for(world))
    spelled = replace(request, host=request.host + ("." if dot else "") + port)
    assert blocked(rules, spelled) == world.blocks(request)


def test_it_allows_a_user_with_an_empty_allowlist_from_anywhere() -> None:
    rng = random.Random(7)
    fps = [rng.randbytes(32).hex() for _ in range(2)]
    world = World(["api.example.com"], [User(1, [fps[0]], [], []), User(2, [fps[1]], [], [])])
    inputs = replace(world.inputs(), bindings=(UserBinding(2, (fps[1],), ()),))  # an empty binding is ignored
    rules = compile_rules(inputs, prefix=PREFIX, max_rules=5).rules
    assert [rule.ref for rule in rules] == [PREFIX + "base", PREFIX + "allow_0"]
    for fp in fps:
        for ip in ("198.51.100.1", "2001:db8::1"):
            assert not blocked(rules, Request("api.example.com", ipaddress.ip_address(ip), fingerprint=fp))


def test_every_expression_is_validated_when_compiled_the_one_place_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    # The client checks a rule's shape only (cloudflare/client.py _check_rule): an expression the parser refuses
    # must stop here, before any rule is returned.
    from certificates.firewall import compiler
    from cloudflare.expressions import ExpressionError

    def refuse(text: str) -> None:
        raise ExpressionError(f"refused: {text[:20]}")

    compiler.clear_caches()
    monkeypatch.setattr(compiler, "validate", refuse)
    world = World(["api.example.com"], [User(1, [random.Random(3).randbytes(32).hex()], [], [])])
    with pytest.raises(ExpressionError, match="refused"):
        compile_rules(world.inputs(), prefix=PREFIX, max_rules=5)
    compiler.clear_caches()


# --- Sizes -----------------------------------------------------------------------------------------------


def test_it_splits_a_user_with_300_fingerprints_over_several_rules() -> None:
    rng = random.Random(1)
    big = User(42, [rng.randbytes(32).hex() for _ in range(300)], [], [ipaddress.ip_network("192.0.2.0/24")])
    small = User(7, [rng.randbytes(32).hex()], [], [ipaddress.ip_network("2001:db8::/32")])
    world = World(["api.example.com"], [big, small], orphan_denied=[rng.randbytes(32).hex() for _ in range(150)])
    rules = compile_world(world)
    bind_rules = [rule for rule in rules if "_bind_" in rule.ref]
    allow_rules = [rule for rule in rules if "_allow_" in rule.ref]
    assert len(bind_rules) >= 5
    assert len(allow_rules) == 6  # 301 certificates, at most 58 a rule
    assert all(len(rule.expression) <= MAX_EXPRESSION_LENGTH for rule in rules)
    inside, outside = ipaddress.ip_address("192.0.2.77"), ipaddress.ip_address("198.51.100.1")
    for fp in big.usable:
        assert not blocked(rules, Request("api.example.com", inside, fingerprint=fp))
        assert blocked(rules, Request("api.example.com", outside, fingerprint=fp))
    for fp in world.orphan_denied:
        assert blocked(rules, Request("api.example.com", inside, fingerprint=fp))
    inside_v6 = ipaddress.ip_address("2001:db8::5")
    assert not blocked(rules, Request("api.example.com", inside_v6, fingerprint=small.usable[0]))


def test_it_handles_a_user_with_200_networks() -> None:
    rng = random.Random(2)
    networks = [ipaddress.ip_network(f"198.{i // 250}.{i % 250}.0/24") for i in range(0, 400, 2)]
    user = User(5, [rng.randbytes(32).hex() for _ in range(12)], [], networks)
    world = World(["api.example.com", "api-eu.example.com"], [user])
    assert allowlist_fits(world.hostnames, [str(network) for network in networks])
    rules = compile_world(world)
    assert all(len(rule.expression) <= MAX_EXPRESSION_LENGTH for rule in rules)
    for fp in user.usable:
        for network in networks[::17]:
            assert not blocked(rules, Request("api.example.com", network[9], fingerprint=fp))
        assert blocked(rules, Request("api.example.com", ipaddress.ip_address("198.0.1.9"), fingerprint=fp))


def test_it_blocks_everywhere_a_user_whose_allowlist_cannot_fit_in_a_rule() -> None:
    # 200 scattered IPv6 /64s take about 5,000 characters: no rule can hold them. The compiler fails closed
    # for that user only (their certificates are blocked from everywhere), not for the whole zone.
    rng = random.Random(3)
    networks = [ipaddress.ip_network(f"2001:db8:{i:x}:{rng.randrange(1, 0xFFFF):x}::/64") for i in range(200)]
    huge = User(1, [rng.randbytes(32).hex() for _ in range(3)], [], networks)
    normal = User(2, [rng.randbytes(32).hex()], [], [ipaddress.ip_network("192.0.2.0/24")])
    world = World(["api.example.com"], [huge, normal])
    assert not allowlist_fits(world.hostnames, [str(network) for network in networks])
    rules = compile_world(world)
    for fp in huge.usable:
        assert blocked(rules, Request("api.example.com", networks[0][1], fingerprint=fp))
        assert not blocked(rules, Request(OTHER_HOST, networks[0][1], fingerprint=fp))
    fp = normal.usable[0]
    assert not blocked(rules, Request("api.example.com", ipaddress.ip_address("192.0.2.1"), fingerprint=fp))
    assert blocked(rules, Request("api.example.com", ipaddress.ip_address("192.0.3.1"), fingerprint=fp))


def test_it_renders_fingerprint_sets_exactly_like_the_builder() -> None:
    rng = random.Random(4)
    fps = sorted({rng.randbytes(32).hex() for _ in range(40)})
    rules = compile_rules(
        FirewallInputs(("api.example.com",), tuple(fps), ()), prefix=PREFIX, max_rules=5, previous=None
    ).rules
    expected = CERT_FINGERPRINT_SHA256.in_(StringSet(fps)).render()
    assert rules[1].expression.endswith(f" and not {expected})")


# --- Budget, empty inputs, bad inputs, determinism -------------------------------------------------------


def test_it_keeps_base_then_allow_ranges_then_bindings_when_the_zone_has_too_little_room() -> None:
    rng = random.Random(5)
    users = [
        User(i, [rng.randbytes(32).hex() for _ in range(50)], [], [ipaddress.ip_network("192.0.2.0/24")])
        for i in (1, 2, 3, 4)
    ]
    world = World(["api.example.com"], users)  # 200 certificates: 4 allow rules, and binding rules
    full = compile_rules(world.inputs(), prefix=PREFIX, max_rules=1000)
    assert not full.left_out
    needed = len(full.rules)

    some = compile_rules(world.inputs(), prefix=PREFIX, max_rules=6)
    assert [rule.ref.split("_")[2] for rule in some.rules] == ["base", "allow", "allow", "allow", "allow", "bind"]
    assert some.left_out.allow_ranges == 0
    assert some.left_out.user_ids
    assert set(some.left_out.user_ids) <= {1, 2, 3, 4}
    assert (some.left_out.needed, some.left_out.allowed) == (needed, 6)
    assert "leaves room for 6 of the" in some.left_out.reason

    few = compile_rules(world.inputs(), prefix=PREFIX, max_rules=3)
    assert [rule.ref.split("_")[2] for rule in few.rules] == ["base", "allow", "allow"]
    assert few.left_out.allow_ranges == 2
    assert set(few.left_out.user_ids) == {1, 2, 3, 4}
    # What is pushed still blocks what it covers: unknown certificates in the covered ranges.
    covered = [
        fp
        for user in users
        for fp in user.usable
        if blocked(
            few.rules[1:2],
            Request(
                "api.example.com",
                ipaddress.ip_address("192.0.2.1"),
                fingerprint=fp[:-1] + ("0" if fp[-1] != "0" else "1"),
            ),
        )
    ]
    assert covered

    with pytest.raises(RuleBudgetExceeded, match="no room for the portal's base rule") as raised:
        compile_rules(world.inputs(), prefix=PREFIX, max_rules=0)
    assert (raised.value.needed, raised.value.allowed) == (1, 0)


def test_it_returns_no_rules_without_protected_hostnames() -> None:
    # Every rule is scoped to the protected hostnames; with none there is nothing to protect, and an
    # unscoped rule would block the whole zone. The sync then deletes the portal's rules.
    rng = random.Random(6)
    binding = UserBinding(1, (rng.randbytes(32).hex(),), ("192.0.2.1",))
    inputs = FirewallInputs((), (rng.randbytes(32).hex(),), (binding,))
    assert compile_rules(inputs, prefix=PREFIX, max_rules=0).rules == []
    assert compile_rules(replace(inputs, hostnames=(" ",)), prefix=PREFIX, max_rules=0).rules == []


def test_it_refuses_inputs_no_rule_can_express() -> None:
    ok = "c" * 64
    with pytest.raises(FirewallCompileError, match="not a SHA-256 fingerprint"):
        compile_rules(FirewallInputs(("api.example.com",), ("xyz",), ()), prefix=PREFIX, max_rules=5)
    twice = (UserBinding(1, (ok,), ("192.0.2.1",)), UserBinding(1, ("d" * 64,), ("192.0.2.2",)))
    with pytest.raises(FirewallCompileError, match="more than one binding"):
        compile_rules(FirewallInputs(("api.example.com",), (), twice), prefix=PREFIX, max_rules=5)
    for bad in ("a" * 64 + "\n" + "b" * 64, "a" * 63, "a" * 64 + "\n", "g" * 64):
        with pytest.raises(FirewallCompileError, match="not a SHA-256 fingerprint"):
            compile_rules(FirewallInputs(("api.example.com",), (ok, bad, ""), ()), prefix=PREFIX, max_rules=5)
        binding = (UserBinding(1, (bad,), ("192.0.2.1",)),)
        with pytest.raises(FirewallCompileError, match="not a SHA-256 fingerprint"):
            compile_rules(FirewallInputs(("api.example.com",), (), binding), prefix=PREFIX, max_rules=5)
    hosts = tuple(f"host-{i}.example.com" for i in range(250))
    with pytest.raises(FirewallCompileError, match="leave no room"):
        compile_rules(FirewallInputs(hosts, (ok,), ()), prefix=PREFIX, max_rules=5)


@pytest.mark.parametrize("network", ["192.0.2.1/24", "fe80::1%eth0", "not-a-network"])
def test_it_fails_closed_for_one_user_whose_allowlist_no_rule_can_express(network: str) -> None:
    """One bad allowlist must not stop the zone's rules (revocations among them): that user's certificate
    is blocked from every address, and everyone else's rules are as usual."""
    theirs, other, denied = "c" * 64, "d" * 64, "e" * 64
    bindings = (UserBinding(1, (theirs,), (network,)), UserBinding(2, (other,), ("198.51.100.0/24",)))
    inputs = FirewallInputs(("api.example.com",), (theirs, other), bindings)
    rules = compile_rules(inputs, prefix=PREFIX, max_rules=5).rules
    for ip in ("192.0.2.1", "198.51.100.7", "2001:db8::1"):
        address = ipaddress.ip_address(ip)
        assert blocked(rules, Request("api.example.com", address, fingerprint=theirs))
        assert blocked(rules, Request("api.example.com", address, fingerprint=denied))
    assert not blocked(rules, Request("api.example.com", ipaddress.ip_address("198.51.100.7"), fingerprint=other))


def test_it_normalises_fingerprints_and_hostnames() -> None:
    fp = "ab" * 32
    inputs = FirewallInputs((" API.Example.com ",), (":".join(fp[i : i + 2] for i in range(0, 64, 2)).upper(),), ())
    rules = compile_rules(inputs, prefix=PREFIX, max_rules=5).rules
    request = Request("api.example.com", ipaddress.ip_address("192.0.2.1"), fingerprint=fp)
    assert not blocked(rules, request)
    assert blocked(rules, replace(request, fingerprint="cd" * 32))


@settings(max_examples=40, deadline=None)
@given(world=worlds(), seed=st.integers(0, 1000))
def test_it_is_deterministic(world: World, seed: int) -> None:
    first = compile_world(world)
    assert compile_world(world) == first
    shuffled = World(list(world.hostnames), list(world.users), list(world.orphan_denied))
    random.Random(seed).shuffle(shuffled.users)
    random.Random(seed).shuffle(shuffled.orphan_denied)
    assert compile_world(shuffled) == first
    assert compile_world(world, previous=first) == first


# --- Stability -------------------------------------------------------------------------------------------


def changed_refs(before: list[DesiredRule], after: list[DesiredRule], kind: str = "") -> set[str]:
    """Refs added, removed or rewritten; with `kind` ("bind", "allow"), only rules of that kind."""
    old = {rule.ref: rule for rule in before}
    new = {rule.ref: rule for rule in after}
    changed = {ref for ref in old.keys() | new.keys() if old.get(ref) != new.get(ref)}
    return {ref for ref in changed if f"_{kind}_" in ref} if kind else changed


def refs_of_user(rules: list[DesiredRule], user_id: int) -> set[str]:
    placement = placement_of((rule.ref, rule.expression, rule.description) for rule in rules)
    return {f"{PREFIX}bind_{number}" for number, rule in placement.bind.items() if user_id in (rule.user_ids or ())}


@st.composite
def populations(draw: st.DrawFn) -> World:
    """Enough users for several binding rules, so that one change has something to disturb."""
    seed = draw(st.integers(0, 10**6))
    rng = random.Random(seed)
    users = []
    for user_id in rng.sample(range(1, 10_000), rng.randint(10, 60)):
        networks = {ipaddress.ip_network(f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.0/24")}
        if rng.random() < 0.5:
            networks.add(ipaddress.ip_network(f"2001:db8:{rng.randint(0, 0xFFFF):x}::/48"))
        usable = [rng.randbytes(32).hex() for _ in range(rng.randint(1, 12))]
        users.append(User(user_id, usable, [], sorted(networks, key=str) if rng.random() < 0.8 else []))
    return World(["api.example.com"], users, [rng.randbytes(32).hex() for _ in range(rng.randint(0, 120))])


def assert_one_user_change(before: list[DesiredRule], after: list[DesiredRule], user_id: int) -> None:
    changed = changed_refs(before, after, "bind")
    assert len(changed) <= 2, changed
    old_refs, new_refs = refs_of_user(before, user_id), refs_of_user(after, user_id)
    if old_refs and old_refs == new_refs:
        # The common case: the user's clause still fits where it was, so only that rule is rewritten.
        assert changed <= old_refs
    assert changed <= old_refs | new_refs


@settings(max_examples=60, deadline=None)
@given(world=populations(), pick=st.integers(0, 10**6), network=ip_networks(), action=st.sampled_from("arc"))
def test_it_rewrites_one_rule_when_one_users_allowlist_changes(
    world: World, pick: int, network: IPNetwork, action: str
) -> None:
    before = compile_world(world)
    user = world.users[pick % len(world.users)]
    if action == "a":
        user.networks = [*user.networks, network]
    elif action == "r":
        user.networks = user.networks[1:]
    else:
        user.networks = [network]
    after = compile_world(world, previous=before)
    assert_one_user_change(before, after, user.user_id)


@settings(max_examples=60, deadline=None)
@given(world=populations(), pick=st.integers(0, 10**6), fp=fingerprints, add=st.booleans())
def test_it_rewrites_one_rule_when_one_users_certificates_change(world: World, pick: int, fp: str, add: bool) -> None:
    before = compile_world(world)
    user = world.users[pick % len(world.users)]
    user.usable = [*user.usable, fp] if add or len(user.usable) < 2 else user.usable[1:]
    after = compile_world(world, previous=before)
    assert_one_user_change(before, after, user.user_id)
    # The certificate's allow range changes (two rules when the range fills up and splits).
    assert 1 <= len(changed_refs(before, after, "allow")) <= 2


@settings(max_examples=60, deadline=None)
@given(world=populations(), user_id=st.integers(10_000, 20_000), fps=st.lists(fingerprints, min_size=1, max_size=12))
def test_it_changes_at_most_one_rule_when_a_user_is_added(world: World, user_id: int, fps: list[str]) -> None:
    before = compile_world(world)
    world.users.append(User(user_id, fps, [], [ipaddress.ip_network("192.0.2.0/24")]))
    after = compile_world(world, previous=before)
    assert len(changed_refs(before, after, "bind")) <= 1


@settings(max_examples=60, deadline=None)
@given(world=populations(), pick=st.integers(0, 10**6))
def test_it_changes_at_most_one_rule_when_a_user_is_removed(world: World, pick: int) -> None:
    before = compile_world(world)
    world.users.pop(pick % len(world.users))
    after = compile_world(world, previous=before)
    assert len(changed_refs(before, after, "bind")) <= 1


@settings(max_examples=40, deadline=None)
@given(world=populations(), pick=st.integers(0, 10**6))
def test_it_changes_one_allow_rule_when_a_certificate_without_allowlist_is_revoked(world: World, pick: int) -> None:
    unbound = [user for user in world.users if not user.networks]
    if not unbound:
        return
    user = unbound[pick % len(unbound)]
    before = compile_world(world)
    user.denied.append(user.usable.pop())
    after = compile_world(world, previous=before)
    changed = changed_refs(before, after)
    assert len(changed) == 1
    assert "_allow_" in changed.pop()


def test_it_rewrites_exactly_one_rule_in_the_common_case() -> None:
    rng = random.Random(8)
    users = [
        User(i, [rng.randbytes(32).hex() for _ in range(5)], [], [ipaddress.ip_network(f"10.{i}.0.0/16")])
        for i in range(1, 41)
    ]
    world = World(["api.example.com"], users)
    before = compile_world(world)
    assert len(before) > 4
    users[17].networks = [ipaddress.ip_network("10.200.0.0/16")]  # same length: fits where it was
    after = compile_world(world, previous=before)
    assert changed_refs(before, after) == refs_of_user(before, 18)
    assert len(refs_of_user(before, 18)) == 1


def test_it_reads_back_the_placement_and_survives_rules_edited_by_hand() -> None:
    rng = random.Random(9)
    office = [ipaddress.ip_network("192.0.2.0/24")]
    users = [User(i, [rng.randbytes(32).hex() for _ in range(8)], [], office) for i in range(1, 30)]
    world = World(["api.example.com"], users, [rng.randbytes(32).hex() for _ in range(100)])
    before = compile_world(world)
    placement = placement_of((rule.ref, rule.expression, rule.description) for rule in before)
    assert placement.allow == tuple(
        rule.ref.removeprefix(PREFIX + "allow_") for rule in before if "_allow_" in rule.ref
    )
    assert placement.allow[0] == "0"
    assert set().union(*(rule.user_ids or set() for rule in placement.bind.values())) == set(range(1, 30))

    edited = [
        (rule.ref, "this is ((not an expression", rule.description)
        if rule.ref.endswith("allow_0")
        else (rule.ref, rule.expression, "edited by hand")
        if rule.ref.endswith("bind_2")
        else (rule.ref, rule.expression, rule.description)
        for rule in before
    ]
    edited.append((PREFIX + "bind_999999999", "ip.src in {192.0.2.1}", "someone's"))
    edited.append((PREFIX + "something_else", "true", ""))
    placement = placement_of(edited)
    assert placement.allow[0] == "0"  # known by its ref, whatever its expression says
    assert placement.bind[2].user_ids is None
    assert placement.bind[999999999].user_ids == frozenset()  # no certificates in it: holds no one
    after = compile_rules(world.inputs(), prefix=PREFIX, max_rules=1000, previous=placement).rules
    check_rules(after)
    # The binding rule with the edited description is recognised by its certificates and rebuilt in place;
    # the allow rules keep their ranges, so the edited one is simply written again.
    assert [rule for rule in after if "_bind_" in rule.ref] == [rule for rule in before if "_bind_" in rule.ref]
    assert after == before
    request = Request("api.example.com", ipaddress.ip_address("192.0.2.1"))
    for fp in world.orphan_denied:
        assert blocked(after, replace(request, fingerprint=fp))
