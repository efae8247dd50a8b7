"""The firewall rules with a portal CA (issue #11): what the compiled rules block, read from their rendered text and
evaluated in order by the emulator's evaluator, against a model of what the portal intends.

A portal CA's certificate passes when its serial starts with the zone's marker, it is not denied, and it comes from
its owner's networks; any other verified certificate passes when its fingerprint is listed and it comes from its
owner's networks (certificates/firewall/compiler.py).
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass, field, replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from certificates.firewall.compiler import (
    DesiredRule,
    FirewallCompileError,
    FirewallInputs,
    UserBinding,
    allowlist_fits,
    compile_rules,
    placement_of,
)
from cloudflare.expressions import CERT_SERIAL, MAX_EXPRESSION_LENGTH, ExpressionError, StringSet, validate
from cloudflare_emulator import evaluator
from cloudflare_emulator.evaluator import Request
from tests.firewall.test_compiler import (
    OTHER_HOST,
    PREFIX,
    PROTECTED_POOL,
    IPNetwork,
    blocked,
    check_rules,
    contains,
    ip_networks,
)

API = "api.example.com"
# Cloudflare's field reference example for cert_issuer_ski.
PORTAL_SKI = "8204924CF49D471E855862706D889F58F6B784D3"
MANAGED_SKI = "C0FFEE00C0FFEE00C0FFEE00C0FFEE00C0FFEE00"  # Cloudflare's managed CA: never a portal issuer
MARKER = "1A2B3C4D"


def serial(prefix: str, rng: random.Random | None = None) -> str:
    """A portal-CA serial: the 16-digit owner prefix and 20 random hex digits (certificates.authority.serials)."""
    return prefix + f"{(rng or random).getrandbits(80):020X}"


def fp(rng: random.Random) -> str:
    return rng.randbytes(32).hex()


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


# --- A model of a zone with a portal CA -----------------------------------------------------------------------


@dataclass
class Member:
    user_id: int
    tag: str
    networks: list[IPNetwork]
    portal: list[str] = field(default_factory=list)  # serials of usable portal-CA certificates
    portal_denied: list[str] = field(default_factory=list)  # revoked, unusable, or of a deactivated owner
    managed: list[str] = field(default_factory=list)  # fingerprints of usable managed-CA certificates
    managed_denied: list[str] = field(default_factory=list)

    def allowed_from(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return not self.networks or any(contains(network, address) for network in self.networks)


@dataclass
class Zone:
    hostnames: list[str]
    issuers: list[str]  # trusted portal CAs
    marker: str  # "" when no portal CA has signed for the zone
    members: list[Member]
    issued_marker: str = MARKER  # what the members' serials start with (the zone's marker, when it has one)
    strays: list[str] = field(default_factory=list)  # serials a portal CA's key signed outside this zone's portal

    def prefix(self, member: Member) -> str:
        return self.marker + member.tag if self.marker else ""

    def inputs(self) -> FirewallInputs:
        return FirewallInputs(
            hostnames=tuple(self.hostnames),
            allowed_fingerprints=tuple(fp for member in self.members for fp in member.managed),
            bindings=tuple(
                UserBinding(
                    member.user_id,
                    tuple(member.managed),
                    tuple(str(network) for network in member.networks),
                    serial_prefix=self.prefix(member) if member.portal else "",
                )
                for member in self.members
                if member.networks
            ),
            portal_issuers=tuple(self.issuers),
            serial_marker=self.marker,
            denied_serials=tuple(serial for member in self.members for serial in member.portal_denied),
        )

    def blocks(self, request: Request) -> bool:
        if request.host not in self.hostnames:
            return False
        if not request.verified or request.revoked:
            return True
        if request.issuer_ski in self.issuers:
            if not self.marker or not request.serial.startswith(self.marker):
                return True
            if any(request.serial in member.portal_denied for member in self.members):
                return True
            for member in self.members:
                if member.portal and request.serial.startswith(self.prefix(member)):
                    return not member.allowed_from(request.ip)
            return False  # the marker and an owner without a binding: only the portal signs with the marker
        for member in self.members:
            if request.fingerprint in member.managed:
                return not member.allowed_from(request.ip)
        return True  # any other issuer: only the fingerprints the portal lists pass


def compile_zone(zone: Zone, previous: list[DesiredRule] | None = None, max_rules: int = 1000) -> list[DesiredRule]:
    placement = placement_of((rule.ref, rule.expression, rule.description) for rule in previous or [])
    compiled = compile_rules(zone.inputs(), prefix=PREFIX, max_rules=max_rules, previous=placement)
    assert not compiled.left_out
    check_rules(compiled.rules)
    return compiled.rules


# --- Strategies ------------------------------------------------------------------------------------------------

hex_strings = st.text("0123456789ABCDEF", min_size=1, max_size=12)
skis = st.binary(min_size=20, max_size=20).map(lambda raw: raw.hex().upper())
markers = st.integers(0x10000000, 0x7FFFFFFF).map(lambda n: f"{n:08X}")


@st.composite
def tags(draw: st.DrawFn, count: int) -> list[str]:
    """Unique owner tags; often consecutive, so that one owner's prefix bound ("...F" -> "...G", "...9" -> "...:")
    sits right next to another owner's prefix."""
    if draw(st.booleans()):
        start = draw(st.sampled_from([0x0000000F, 0x00000009, 0x1234567E, 0xFFFFFFF0 - count, 0x000000FA]))
        return [f"{start + i:08X}" for i in range(count)]
    return draw(
        st.lists(st.integers(0, 2**32 - 1).map(lambda n: f"{n:08X}"), min_size=count, max_size=count, unique=True)
    )


@st.composite
def zones(draw: st.DrawFn, max_members: int = 5) -> Zone:
    rng = random.Random(draw(st.integers(0, 2**32)))
    hostnames = draw(st.lists(st.sampled_from(PROTECTED_POOL), min_size=1, unique=True))
    issuers = draw(st.lists(skis, max_size=2, unique=True))
    issued_marker = draw(markers)
    marker = issued_marker if draw(st.integers(0, 5)) else ""
    user_ids = draw(st.lists(st.integers(1, 10**6), max_size=max_members, unique=True))
    members = []
    for user_id, tag in zip(user_ids, draw(tags(len(user_ids))), strict=True):
        prefix = issued_marker + tag
        members.append(
            Member(
                user_id,
                tag,
                draw(st.lists(ip_networks(), max_size=3)),
                portal=[serial(prefix, rng) for _ in range(draw(st.integers(0, 3)))],
                portal_denied=[serial(prefix, rng) for _ in range(draw(st.integers(0, 2)))],
                managed=[fp(rng) for _ in range(draw(st.integers(0, 2)))],
                managed_denied=[fp(rng) for _ in range(draw(st.integers(0, 1)))],
            )
        )
    # The next marker (another zone's): it differs from this zone's in the last digit only, most of the time.
    other_marker = f"{0x10000000 + (int(issued_marker, 16) + 1 - 0x10000000) % 0x70000000:08X}"
    strays = [serial(other_marker + "00000000", rng), serial(f"{rng.getrandbits(64):016X}", rng)]
    return Zone(hostnames, issuers, marker, members, issued_marker=issued_marker, strays=strays)


@st.composite
def requests_for(draw: st.DrawFn, zone: Zone) -> Request:
    rng = random.Random(draw(st.integers(0, 2**32)))
    host = draw(st.sampled_from([*zone.hostnames, OTHER_HOST]))
    portal_ski = draw(st.sampled_from(zone.issuers)) if zone.issuers else draw(skis)
    member = draw(st.sampled_from(zone.members)) if zone.members else None
    kind = draw(st.sampled_from(["portal", "portal", "stray", "unknown tag", "managed", "foreign", "none"]))
    if kind == "portal" and member and (member.portal or member.portal_denied):
        identity = {"serial": draw(st.sampled_from(member.portal + member.portal_denied)), "issuer_ski": portal_ski}
    elif kind == "managed" and member and (member.managed or member.managed_denied):
        identity = {"fingerprint": draw(st.sampled_from(member.managed + member.managed_denied))}
        identity["issuer_ski"] = MANAGED_SKI
    elif kind == "stray":
        identity = {"serial": draw(st.sampled_from(zone.strays)), "issuer_ski": portal_ski}
    elif kind == "unknown tag":
        identity = {"serial": serial(zone.issued_marker + f"{rng.getrandbits(32):08X}", rng), "issuer_ski": portal_ski}
    elif kind == "none":
        return Request(host=host, ip=draw(st.ip_addresses()), verified=False, presented=draw(st.booleans()))
    else:
        # Another issuer the account trusts: it may even sign with a member's serial, which alone passes nothing.
        copied = member.portal if member and member.portal else [serial(zone.issued_marker + "00000000", rng)]
        identity = {"serial": draw(st.sampled_from(copied)), "issuer_ski": draw(skis)}
    identity.setdefault("fingerprint", fp(rng))
    identity.setdefault("serial", f"{rng.getrandbits(128):X}")
    if member and member.networks and draw(st.booleans()):
        network = draw(st.sampled_from(member.networks))
        address = network[draw(st.integers(0, network.num_addresses - 1))]
    else:
        address = draw(st.ip_addresses())
    revoked = draw(st.sampled_from([False, False, False, True]))
    return Request(host=host, ip=address, revoked=revoked, **identity)


# --- What the rules block --------------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), zone=zones())
def test_it_blocks_exactly_what_the_portal_intends(data: st.DataObject, zone: Zone) -> None:
    rules = compile_zone(zone)
    for _ in range(15):
        request = data.draw(requests_for(zone))
        assert blocked(rules, request) == zone.blocks(request), (request, [rule.expression for rule in rules])


@settings(max_examples=60, deadline=None)
@given(data=st.data(), zone=zones())
def test_it_never_blocks_another_hostname(data: st.DataObject, zone: Zone) -> None:
    rules = compile_zone(zone)
    request = replace(data.draw(requests_for(zone)), host=OTHER_HOST)
    assert not blocked(rules, request)
    assert not blocked(rules, replace(request, verified=False))


@settings(max_examples=60, deadline=None)
@given(zone=zones(max_members=4))
def test_it_gives_each_case_its_decision(zone: Zone) -> None:
    """Each case of the brief, for every member: a portal-CA certificate passes from its owner's networks and is
    blocked from elsewhere; a denied serial, a certificate the portal CA signed without the marker, a managed-CA
    certificate not listed, and a certificate of an unknown issuer are blocked everywhere."""
    zone.issuers = zone.issuers or [PORTAL_SKI]
    zone.marker = zone.issued_marker
    rules = compile_zone(zone)
    host = zone.hostnames[0]
    anywhere = [ip("203.0.113.9"), ip("2001:db8:ffff::1")]

    def from_portal(serial: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> Request:
        return Request(host, address, fingerprint="e" * 64, serial=serial, issuer_ski=zone.issuers[-1])

    for member in zone.members:
        inside = [network[0] for network in member.networks] + [network[-1] for network in member.networks]
        for portal_serial in member.portal:
            for address in inside:
                assert not blocked(rules, from_portal(portal_serial, address))
            for address in anywhere:
                assert blocked(rules, from_portal(portal_serial, address)) == (not member.allowed_from(address))
            unlisted = Request(host, anywhere[0], fingerprint="e" * 64, serial=portal_serial, issuer_ski=MANAGED_SKI)
            assert blocked(rules, unlisted), "a serial alone, from another issuer, passes nothing"
        for denied in member.portal_denied:
            for address in [*inside, *anywhere]:
                assert blocked(rules, from_portal(denied, address))
        for fingerprint in member.managed_denied:
            for address in [*inside, *anywhere]:
                assert blocked(rules, Request(host, address, fingerprint=fingerprint, issuer_ski=MANAGED_SKI))
    for stray in zone.strays:
        assert blocked(rules, from_portal(stray, anywhere[0]))
    assert blocked(
        rules, Request(host, anywhere[0], fingerprint="f" * 64, serial="1" * 36, issuer_ski=PORTAL_SKI[::-1])
    )


def test_a_portal_certificate_passes_from_its_owners_networks_and_nowhere_else() -> None:
    rng = random.Random(1)
    alice = Member(1, "0000000F", [ipaddress.ip_network("192.0.2.0/24"), ipaddress.ip_network("2001:db8::/32")])
    bob = Member(2, "00000010", [ipaddress.ip_network("198.51.100.0/24")])  # the tag right after alice's
    alice.portal = [serial(MARKER + alice.tag, rng) for _ in range(3)]
    bob.portal = [serial(MARKER + bob.tag, rng)]
    alice.portal_denied = [serial(MARKER + alice.tag, rng)]
    zone = Zone([API], [PORTAL_SKI], MARKER, [alice, bob])
    rules = compile_zone(zone)
    assert [rule.ref.removeprefix(PREFIX) for rule in rules] == ["base", "issuer", "deny_0", "allow_0", "bind_1"]

    def request(serial: str, address: str) -> Request:
        return Request(API, ip(address), fingerprint=fp(rng), serial=serial, issuer_ski=PORTAL_SKI)

    for portal_serial in alice.portal:
        assert not blocked(rules, request(portal_serial, "192.0.2.200"))
        assert not blocked(rules, request(portal_serial, "2001:db8:1::1"))
        assert blocked(rules, request(portal_serial, "198.51.100.1"))
        assert not blocked(rules, replace(request(portal_serial, "198.51.100.1"), host=OTHER_HOST))
    assert not blocked(rules, request(bob.portal[0], "198.51.100.1"))
    assert blocked(rules, request(bob.portal[0], "192.0.2.200")), "the tag after alice's is bob's, not alice's"
    assert blocked(rules, request(alice.portal_denied[0], "192.0.2.1"))
    assert blocked(rules, request("2" + alice.portal[0][1:], "192.0.2.1")), "another zone's marker"
    assert blocked(rules, request(MARKER[:-1] + "E" + alice.portal[0][8:], "192.0.2.1")), "one digit off"
    assert blocked(rules, replace(request(alice.portal[0], "192.0.2.1"), revoked=True))
    assert blocked(rules, replace(request(alice.portal[0], "192.0.2.1"), verified=False))


def test_without_a_marker_no_portal_certificate_passes() -> None:
    """A zone no portal CA has signed for has no marker: every portal-CA certificate presented there was made for
    another zone of the account (validation is account-level) or outside the portal."""
    rules = compile_rules(
        FirewallInputs((API,), (), (), portal_issuers=(PORTAL_SKI,)), prefix=PREFIX, max_rules=5
    ).rules
    assert [rule.ref.removeprefix(PREFIX) for rule in rules] == ["base", "issuer", "allow_0"]
    request = Request(API, ip("192.0.2.1"), fingerprint="a" * 64, serial=serial(MARKER + "00000001"))
    assert blocked(rules, replace(request, issuer_ski=PORTAL_SKI))
    assert blocked(rules, replace(request, issuer_ski=MANAGED_SKI))


def test_with_portal_cas_and_no_managed_certificate_one_rule_blocks_every_other_issuer() -> None:
    inputs = FirewallInputs((API,), (), (), portal_issuers=(PORTAL_SKI,), serial_marker=MARKER)
    rules = compile_rules(inputs, prefix=PREFIX, max_rules=5).rules
    allow = {rule.ref: rule for rule in rules}[PREFIX + "allow_0"]
    assert allow.expression.endswith(
        f'and not cf.tls_client_auth.cert_issuer_ski in {{"{PORTAL_SKI}"}} and cf.tls_client_auth.cert_verified)'
    )
    portal = Request(API, ip("192.0.2.1"), fingerprint="a" * 64, serial=serial(MARKER + "00000001"))
    assert not blocked(rules, replace(portal, issuer_ski=PORTAL_SKI))
    assert blocked(rules, replace(portal, issuer_ski=MANAGED_SKI))


def test_without_portal_cas_the_rules_are_those_of_the_managed_ca_alone() -> None:
    """No trusted portal CA: no issuer rule, no SKI in the allow rules, and a certificate a portal CA signed does
    not pass on its serial (the CA is not trusted, or no longer: only listed fingerprints pass)."""
    rng = random.Random(2)
    member = Member(1, "00000001", [ipaddress.ip_network("192.0.2.0/24")], managed=[fp(rng)])
    member.portal = [serial(MARKER + member.tag, rng)]
    zone = Zone([API], [], MARKER, [member])
    rules = compile_zone(zone)
    assert [rule.ref.removeprefix(PREFIX) for rule in rules] == ["base", "allow_0", "bind_1"]
    assert all("cert_issuer_ski" not in rule.expression for rule in rules)
    assert blocked(rules, Request(API, ip("192.0.2.1"), serial=member.portal[0], issuer_ski=PORTAL_SKI))
    assert not blocked(rules, Request(API, ip("192.0.2.1"), fingerprint=member.managed[0], issuer_ski=MANAGED_SKI))


def test_a_user_whose_allowlist_cannot_fit_is_blocked_everywhere_portal_certificates_included() -> None:
    rng = random.Random(3)
    networks = [ipaddress.ip_network(f"2001:db8:{i:x}:{rng.randrange(1, 0xFFFF):x}::/64") for i in range(200)]
    huge = Member(1, "00000001", networks)
    huge.portal = [serial(MARKER + huge.tag, rng)]
    zone = Zone([API], [PORTAL_SKI], MARKER, [huge])
    assert not allowlist_fits(zone.hostnames, [str(network) for network in networks])
    rules = compile_zone(zone)
    request = Request(API, networks[0][1], serial=huge.portal[0], issuer_ski=PORTAL_SKI)
    assert blocked(rules, request)
    assert not blocked(rules, replace(request, host=OTHER_HOST))


# --- The prefix test -------------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(prefix=hex_strings, value=st.text("0123456789ABCDEF", min_size=0, max_size=40), cut=st.integers(0, 12))
def test_a_prefix_test_by_string_order_matches_exactly_the_values_with_the_prefix(
    prefix: str, value: str, cut: int
) -> None:
    """ "F" + 1 is "G" and "9" + 1 is ":", both above every hex digit: ``ge prefix and lt successor`` is
    ``startswith`` for uppercase hex, whatever comes after the prefix."""
    test = CERT_SERIAL.starts_with(prefix)
    text = test.render()
    validate(text)
    candidates = [value, prefix + value, prefix[:cut] + value, prefix[:-1]]
    for candidate in candidates:
        fields = Request(API, ip("192.0.2.1"), serial=candidate).fields()
        assert evaluator.evaluate(evaluator.parse(text), fields) == candidate.startswith(prefix), (text, candidate)


@pytest.mark.parametrize(("prefix", "above"), [("1A2B3C4F", "1A2B3C4G"), ("1A2B3C49", "1A2B3C4:"), ("FF", "FG")])
def test_the_bound_above_a_prefix_is_its_last_character_plus_one(prefix: str, above: str) -> None:
    assert CERT_SERIAL.starts_with(prefix).render() == (
        f'(cf.tls_client_auth.cert_serial ge "{prefix}" and cf.tls_client_auth.cert_serial lt "{above}")'
    )


def test_a_prefix_test_needs_a_string_field_and_a_prefix() -> None:
    from cloudflare.expressions import IP_SRC

    with pytest.raises(ExpressionError, match="STRING"):
        IP_SRC.starts_with("1")
    with pytest.raises(ExpressionError, match="empty"):
        CERT_SERIAL.starts_with("")


# --- Sizes and the rule limit ----------------------------------------------------------------------------------


def test_it_renders_serial_sets_exactly_like_the_builder() -> None:
    rng = random.Random(4)
    serials = sorted({serial(MARKER + "00000001", rng) for _ in range(30)})
    inputs = FirewallInputs((API,), (), (), portal_issuers=(PORTAL_SKI,), serial_marker=MARKER, denied_serials=serials)
    (deny,) = [rule for rule in compile_rules(inputs, prefix=PREFIX, max_rules=5).rules if "_deny_" in rule.ref]
    assert deny.expression.endswith(f" and {CERT_SERIAL.in_(StringSet(serials)).render()})")


def test_a_deny_rule_holds_about_a_hundred_serials_and_never_more_than_fits() -> None:
    rng = random.Random(5)
    denied = [serial(MARKER + f"{rng.getrandbits(32):08X}", rng) for _ in range(1000)]
    inputs = FirewallInputs((API,), (), (), portal_issuers=(PORTAL_SKI,), serial_marker=MARKER, denied_serials=denied)
    rules = compile_rules(inputs, prefix=PREFIX, max_rules=1000).rules
    check_rules(rules)
    deny = [rule for rule in rules if "_deny_" in rule.ref]
    assert len(deny) <= 11  # 1,000 serials at 39 characters each, about 100 a rule with one hostname
    request = Request(API, ip("192.0.2.1"), issuer_ski=PORTAL_SKI)
    assert all(blocked(deny, replace(request, serial=denied_serial)) for denied_serial in denied)
    assert not blocked(deny, replace(request, serial=serial(MARKER + "00000000", rng)))


def test_one_binding_rule_holds_dozens_of_users_with_portal_certificates() -> None:
    """One clause per user whatever their number of certificates: 2,000 users with one network each need under
    90 binding rules, every one filled close to the 4,096-character limit and none over it."""
    rng = random.Random(6)
    members = [
        Member(user_id, f"{user_id:08X}", [ipaddress.ip_network(f"10.{user_id // 256}.{user_id % 256}.0/24")])
        for user_id in range(1, 2001)
    ]
    for member in members:
        member.portal = [serial(MARKER + member.tag, rng) for _ in range(3)]
    rules = compile_zone(Zone([API, "api-eu.example.com"], [PORTAL_SKI], MARKER, members))
    bind = [rule for rule in rules if "_bind_" in rule.ref]
    assert len(bind) <= 2000 // 23  # each clause is about 160 characters: 23 or 24 users a rule
    assert all(MAX_EXPRESSION_LENGTH - 150 < len(rule.expression) <= MAX_EXPRESSION_LENGTH for rule in bind[:-1])


def test_it_keeps_base_issuer_deny_allow_then_bindings_when_the_zone_is_short() -> None:
    rng = random.Random(7)
    members = [Member(i, f"{i:08X}", [ipaddress.ip_network("192.0.2.0/24")]) for i in range(1, 5)]
    for member in members:
        member.portal = [serial(MARKER + member.tag, rng)]
        member.portal_denied = [serial(MARKER + member.tag, rng) for _ in range(60)]  # 240: three deny rules
    anywhere = Member(5, "00000005", [], managed=[fp(rng) for _ in range(120)])  # three allow rules
    zone = Zone([API], [PORTAL_SKI], MARKER, [*members, anywhere])
    full = compile_rules(zone.inputs(), prefix=PREFIX, max_rules=1000)
    kinds = [rule.ref.removeprefix(PREFIX).split("_")[0] for rule in full.rules]
    assert kinds == ["base", "issuer", "deny", "deny", "deny", "allow", "allow", "allow", "bind"]

    for limit in range(1, len(kinds) + 1):
        some = compile_rules(zone.inputs(), prefix=PREFIX, max_rules=limit)
        assert [rule.ref for rule in some.rules] == [rule.ref for rule in full.rules[:limit]]
        check_rules(some.rules)
        left = some.left_out
        assert bool(left) == (limit < len(kinds))
        assert left.issuer_rule == (limit < 2)
        kept_deny = [rule for rule in some.rules if "_deny_" in rule.ref]
        pushed = sum(int(rule.description.split()[2]) for rule in kept_deny)
        assert left.denied_serials == 240 - pushed
        assert left.allow_ranges == 3 - sum("_allow_" in rule.ref for rule in some.rules)
        assert set(left.user_ids) == (set() if limit == len(kinds) else {1, 2, 3, 4})
        if left:
            assert (left.needed, left.allowed) == (len(kinds), limit)
            assert left.as_dict()["denied_serials"] == left.denied_serials
            assert left.as_dict()["issuer_rule"] == left.issuer_rule


def test_it_refuses_identities_no_rule_can_express() -> None:
    ok = FirewallInputs((API,), (), (), portal_issuers=(PORTAL_SKI,), serial_marker=MARKER)
    for bad in ({"denied_serials": ("12G4",)}, {"denied_serials": ("1" * 41,)}, {"portal_issuers": ("not hex",)}):
        with pytest.raises(FirewallCompileError, match="in hex"):
            compile_rules(replace(ok, **bad), prefix=PREFIX, max_rules=5)  # type: ignore[arg-type]
    with pytest.raises(FirewallCompileError, match="in hex"):
        compile_rules(replace(ok, serial_marker='1A2B3C4D" or true or "'), prefix=PREFIX, max_rules=5)
    binding = UserBinding(1, (), ("192.0.2.0/24",), serial_prefix="1A2B ) or (true")
    with pytest.raises(FirewallCompileError, match="in hex"):
        compile_rules(replace(ok, bindings=(binding,)), prefix=PREFIX, max_rules=5)


def test_it_normalises_serials_and_key_identifiers() -> None:
    """Tools print them lowercase and with colons; the rule fields show uppercase hex without separators."""
    denied = serial(MARKER + "00000001")
    spelled = ":".join(denied[i : i + 2] for i in range(0, len(denied), 2)).lower()
    ski = ":".join(PORTAL_SKI[i : i + 2] for i in range(0, len(PORTAL_SKI), 2)).lower()
    inputs = FirewallInputs(
        (API,), (), (), portal_issuers=(ski,), serial_marker=MARKER.lower(), denied_serials=(spelled,)
    )
    rules = compile_rules(inputs, prefix=PREFIX, max_rules=5).rules
    assert blocked(rules, Request(API, ip("192.0.2.1"), serial=denied, issuer_ski=PORTAL_SKI))
    assert not blocked(rules, Request(API, ip("192.0.2.1"), serial=serial(MARKER + "00000001"), issuer_ski=PORTAL_SKI))


# --- Stability --------------------------------------------------------------------------------------------------


def changed_refs(before: list[DesiredRule], after: list[DesiredRule]) -> set[str]:
    old = {rule.ref: rule for rule in before}
    new = {rule.ref: rule for rule in after}
    return {ref for ref in old.keys() | new.keys() if old.get(ref) != new.get(ref)}


@st.composite
def large_zones(draw: st.DrawFn) -> Zone:
    """Enough users and denied serials for several binding and deny rules, so a change has something to disturb."""
    rng = random.Random(draw(st.integers(0, 10**6)))
    members = []
    for user_id in rng.sample(range(1, 100_000), rng.randint(30, 150)):
        networks = [ipaddress.ip_network(f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.0/24")]
        if rng.random() < 0.4:
            networks.append(ipaddress.ip_network(f"2001:db8:{rng.randint(0, 0xFFFF):x}::/48"))
        member = Member(user_id, f"{rng.getrandbits(32):08X}", networks if rng.random() < 0.9 else [])
        member.portal = [serial(MARKER + member.tag, rng) for _ in range(rng.randint(1, 3))]
        member.portal_denied = [serial(MARKER + member.tag, rng) for _ in range(rng.randint(0, 4))]
        member.managed = [fp(rng) for _ in range(rng.randint(0, 1))]
        members.append(member)
    return Zone([API], [PORTAL_SKI], MARKER, members)


@settings(max_examples=30, deadline=None)
@given(zone=large_zones(), pick=st.integers(0, 10**6), network=ip_networks())
def test_one_users_allowlist_change_rewrites_one_binding_rule(zone: Zone, pick: int, network: IPNetwork) -> None:
    before = compile_zone(zone)
    member = zone.members[pick % len(zone.members)]
    member.networks = [*member.networks, network]
    after = compile_zone(zone, previous=before)
    changed = changed_refs(before, after)
    assert len(changed) <= 2, changed
    assert all("_bind_" in ref for ref in changed)


@settings(max_examples=30, deadline=None)
@given(zone=large_zones(), pick=st.integers(0, 10**6))
def test_a_revocation_rewrites_one_deny_rule_and_no_binding_rule(zone: Zone, pick: int) -> None:
    """A user with other portal-CA certificates keeps the prefix clause; the revoked serial joins a deny range."""
    holders = [member for member in zone.members if len(member.portal) > 1]
    if not holders:
        return
    member = holders[pick % len(holders)]
    before = compile_zone(zone)
    member.portal_denied.append(member.portal.pop())
    after = compile_zone(zone, previous=before)
    changed = changed_refs(before, after)
    assert 1 <= len(changed) <= 2, changed  # two when the range fills up and splits
    assert all("_deny_" in ref for ref in changed)


@settings(max_examples=30, deadline=None)
@given(zone=large_zones(), pick=st.integers(0, 10**6))
def test_an_expired_denied_certificate_rewrites_one_deny_rule(zone: Zone, pick: int) -> None:
    deniers = [member for member in zone.members if member.portal_denied]
    if not deniers:
        return
    before = compile_zone(zone)
    deniers[pick % len(deniers)].portal_denied.pop()
    after = compile_zone(zone, previous=before)
    changed = changed_refs(before, after)
    assert len(changed) == 1, changed
    assert "_deny_" in changed.pop()


@settings(max_examples=30, deadline=None)
@given(zone=large_zones(), user_id=st.integers(100_000, 200_000))
def test_a_new_user_with_portal_certificates_changes_at_most_one_rule(zone: Zone, user_id: int) -> None:
    before = compile_zone(zone)
    newcomer = Member(user_id, f"{user_id:08X}", [ipaddress.ip_network("192.0.2.0/24")])
    newcomer.portal = [serial(MARKER + newcomer.tag)]
    zone.members.append(newcomer)
    after = compile_zone(zone, previous=before)
    assert len(changed_refs(before, after)) <= 1


@settings(max_examples=20, deadline=None)
@given(zone=large_zones(), seed=st.integers(0, 1000))
def test_it_is_deterministic(zone: Zone, seed: int) -> None:
    first = compile_zone(zone)
    shuffled = replace(zone, members=list(zone.members))
    random.Random(seed).shuffle(shuffled.members)
    assert compile_zone(shuffled) == first
    assert compile_zone(zone, previous=first) == first


def test_it_reads_back_deny_ranges_and_portal_bindings_even_edited_by_hand() -> None:
    rng = random.Random(8)
    members = [Member(i, f"{i:08X}", [ipaddress.ip_network("192.0.2.0/24")]) for i in range(1, 200)]
    for member in members:
        member.portal = [serial(MARKER + member.tag, rng)]
        member.portal_denied = [serial(MARKER + member.tag, rng) for _ in range(2)]
    zone = Zone([API], [PORTAL_SKI], MARKER, members)
    before = compile_zone(zone)
    placement = placement_of((rule.ref, rule.expression, rule.description) for rule in before)
    deny_refs = [rule.ref.removeprefix(PREFIX + "deny_") for rule in before if "_deny_" in rule.ref]
    assert len(deny_refs) >= 4
    assert placement.deny == tuple(sorted(ref.upper() for ref in deny_refs))
    assert set().union(*(rule.user_ids or set() for rule in placement.bind.values())) == set(range(1, 200))
    assert all(rule.serial_prefixes and not rule.fingerprints for rule in placement.bind.values())

    edited = [
        (rule.ref, rule.expression, "edited by hand" if rule.ref.endswith("bind_2") else rule.description)
        for rule in before
    ]
    users_in_2 = placement.bind[2].user_ids or frozenset()
    placement = placement_of(edited)
    assert placement.bind[2].user_ids is None
    assert placement.bind[2].serial_prefixes == {MARKER + f"{user_id:08X}" for user_id in users_in_2}
    after = compile_rules(zone.inputs(), prefix=PREFIX, max_rules=1000, previous=placement).rules
    # The binding rule with the edited description is recognised by its users' serial prefixes and rebuilt as it was.
    assert after == before
