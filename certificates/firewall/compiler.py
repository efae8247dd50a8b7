"""Compile the portal's database state into the zone's desired WAF custom rules (DESIGN.md, "Firewall layout").

Pure Python: no Django, no I/O. The sync (``certificates.firewall.sync``) reads the database and the zone,
calls ``compile_rules`` and writes the difference by ``ref``.

Two kinds of certificates reach the edge. Those of Cloudflare's managed CA are known by fingerprint alone (the CA
may be shared between customers, FACTS.md §5, so "verified" may admit a certificate made anywhere). Those of a
portal CA (DESIGN.md "Issuers", 2) carry an identity the portal chose: the serial is the zone's marker (8 hex
digits), the owner's tag (8) and 20 random digits (``certificates.authority.serials``), shown by
``cf.tls_client_auth.cert_serial`` in uppercase hex, and ``cf.tls_client_auth.cert_issuer_ski`` names the CA. A
fingerprint costs 67 characters of a rule; one prefix test covers all of a user's portal-CA certificates, so
10,000 users with 3 certificates each and their allowlists fit in an Enterprise zone (bench/results/).

Rules, all with action ``block`` and a ``ref`` that starts with ``prefix``, in this order of priority:

* ``<prefix>base``: on the protected hostnames, no verified certificate or a revoked one.
* ``<prefix>issuer`` (only when a portal CA is trusted): a certificate of a portal CA without the zone's serial
  marker, ``cert_issuer_ski in {<trusted portal CAs>} and not <serial starts with the marker>``. An imported
  intermediate may have signed certificates outside the portal, and a certificate made for another zone of the
  account verifies here too (validation is account-level, FACTS.md §4): neither has this zone's marker. A zone
  without a marker has no portal-CA certificate of its own, so the rule then blocks every portal-CA certificate.
* ``<prefix>deny_<lo>``: ``cert_serial in {...}``, the portal-CA certificates that verify but must not pass:
  revoked (Cloudflare checks no revocation for an uploaded CA, DESIGN.md "Issuers"), in any other unusable
  status, or owned by a deactivated user. Expired ones drop out: Cloudflare no longer verifies them. The serial
  space is split into ranges ``[lo, next lo)`` as the allow rules split fingerprints, about 100 serials a rule.
* ``<prefix>allow_<lo>``: only the portal's managed-CA certificates pass: these rules block, on the protected
  hostnames, every fingerprint in the range ``[lo, next lo)`` that is not one the portal issued and considers
  usable. The fingerprint space is split into ranges with the Rules language's string ordering (``ge``/``lt``,
  all plans) so that each rule stays under 4,096 characters. A certificate that is revoked, pending revocation,
  expired, owned by a deactivated user, made in the dashboard or for another account is simply not on the list,
  so no separate deny rule is needed for fingerprints. With a portal CA trusted each allow rule adds ``not
  cert_issuer_ski in {<trusted portal CAs>}``: portal-CA certificates are judged by the rules above instead. So a
  verified certificate of any other issuer (another CA the account trusts, or one the portal marked removed
  before Cloudflare stopped trusting it) is blocked unless its fingerprint is listed: the lists fail closed. With
  no managed-CA certificate at all one rule blocks every verified certificate (not from a portal CA).
* ``<prefix>bind_<n>``: on the protected hostnames, one clause per user with an allowlist,
  ``((fingerprint in {the user's certificates} or <serial starts with the user's prefix>) and not ip.src in
  {the user's networks})``, either identity alone when the user has only one kind, many users' clauses OR-ed
  together. The prefix is the zone's marker and the user's tag: one clause covers all the user's portal-CA
  certificates, whatever their number.

So a portal-CA certificate passes when it has the zone's marker, is not denied, and comes from its owner's
networks; any other verified certificate passes when its fingerprint is listed and it comes from its owner's
networks.

When the zone's rule limit leaves room for fewer rules than that, ``compile_rules`` keeps the base rule, then the
issuer rule, then as many deny ranges, then as many allow ranges, then as many binding rules as fit, and says what
it left out (``LeftOut``): what is left out lets more through, never less, and a revoked certificate matters more
than a stranger's (which the issuer rule and the allow rules stop) or a network binding.

Every rule is scoped to ``lower(http.host) in {<protected hostnames>}`` (the Host header's case is the
client's choice, and string comparisons are case-sensitive; a trailing dot and any port are covered too, see
``_scope``) so that it can never block another hostname of the zone. With no protected
hostnames there is nothing to protect and nothing to scope to, so the compiler returns no rules at all (the
sync then deletes the portal's rules).

Packing is stable (see ``_Packer`` and ``_ranges``): given the placement of the rules as they are in the zone, a
change to one user rewrites the one rule that holds the user, or two when the user's clause no longer fits there
and moves; a new or removed certificate rewrites the allow rule of its range, a newly denied or expired serial the
deny rule of its range. Each packing decision uses exact lengths from ``cloudflare.expressions``; each rule is
rendered once and checked with Cloudflare's parser (``validate``) before it is returned.

Sets of fingerprints and serials are rendered by ``_hex_set`` rather than ``StringSet``: the values are first
checked to be hex digits, for which ``quote`` is just the surrounding quotes, and ``StringSet``'s general
per-value checks cost about 1 s for 100,000 fingerprints on the target machine, the whole time budget. The tests
check that both give the same text.
"""

from __future__ import annotations

import bisect
import heapq
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import octorules_wirefilter

from cloudflare.expressions import (
    CERT_FINGERPRINT_SHA256,
    CERT_ISSUER_SKI,
    CERT_REVOKED,
    CERT_SERIAL,
    CERT_VERIFIED,
    HTTP_HOST,
    IP_SRC,
    MAX_EXPRESSION_LENGTH,
    AllOf,
    And,
    Comparison,
    Expression,
    Field,
    IPSet,
    Lower,
    Not,
    Or,
    StringSet,
    joined_length,
    validate,
)

__all__ = [
    "BindingRulePlacement",
    "CompiledRules",
    "DesiredRule",
    "FirewallCompileError",
    "FirewallInputs",
    "LeftOut",
    "Placement",
    "RuleBudgetExceeded",
    "UserBinding",
    "allowlist_fits",
    "clear_caches",
    "compile_rules",
    "placement_of",
]

BASE = "base"
ISSUER = "issuer"
DENY = "deny"
ALLOW = "allow"
BIND = "bind"

BASE_DESCRIPTION = "mTLS portal: require a verified, unrevoked client certificate on the API hostnames"
ISSUER_DESCRIPTION = "mTLS portal: a portal CA's certificates only with this zone's serial marker {marker}"
ISSUER_UNUSED_DESCRIPTION = "mTLS portal: no portal CA has signed for this zone: none of their certificates"
DENY_DESCRIPTION = (
    "mTLS portal: {count} portal-CA certificates that must not pass (revoked, unusable, owner deactivated), "
    "serials {first} to {last}"
)
ALLOW_DESCRIPTION = "mTLS portal: only the portal's {count} certificates with fingerprints from {low} to {high}"
BIND_DESCRIPTION = "mTLS portal: allowlist binding for users {users}"
# The first range starts below every fingerprint (and serial); its ref says "0" and its rule has no lower bound.
FIRST_BOUND = "0"

_FINGERPRINT = re.compile(r"[0-9a-f]{64}")
_FINGERPRINTS = re.compile(r"(?:[0-9a-f]{64}\n)*")
_FINGERPRINT_LENGTH = 64
# RFC 5280 allows serials of up to 20 octets; the portal CAs' are 18 (certificates.authority.serials).
_SERIAL = re.compile(r"[0-9A-F]{1,40}")
# A Subject Key Identifier: 20 octets by RFC 5280's first method, other lengths by RFC 7093.
_SKI = re.compile(r"[0-9A-F]{2,128}")
_BIND_REF_SUFFIX = re.compile(r"bind_([1-9][0-9]{0,8})\Z")
_ALLOW_REF_SUFFIX = re.compile(r"allow_([0-9a-f]{1,64})\Z")
_DENY_REF_SUFFIX = re.compile(r"deny_([0-9a-f]{1,40})\Z")
_BIND_USERS = re.compile(r"allowlist binding for users((?: [0-9]+)+)")
# A user's serial prefix as a binding clause writes it (Field.starts_with: the lower bound first).
_SERIAL_PREFIX_IN_RULE = re.compile(r'cf\.tls_client_auth\.cert_serial ge "([0-9A-F]{1,40})"')

# Exact rendered sizes of fingerprint sets: each member is 64 hex digits in quotes, members are separated
# by one space, the set has braces. Checked against StringSet in the tests.
_QUOTED_FINGERPRINT = 66
_PER_FINGERPRINT = _QUOTED_FINGERPRINT + 1
_SAMPLE_FINGERPRINT = "0" * 64
# Bounds between allow ranges are the shortest prefixes that separate two fingerprints: rarely 8 hex digits.
_SAMPLE_BOUND = "8" * 8
# What a user's serial prefix is: the zone's marker and the owner's tag (certificates.authority.serials). Only
# allowlist_fits assumes it; the compiler measures the prefixes it is given.
_OWNER_PREFIX_LENGTH = 16
_SAMPLE_NETWORKS = ("192.0.2.0/24",)

# Joining one more clause to a disjunction costs its length plus " or " (cloudflare.expressions.joined_length).
_OR_SEPARATOR = len(" or ")


# --------------------------------------------------------------------------------------------------
# Inputs and outputs


@dataclass(frozen=True)
class UserBinding:
    """A user with a non-empty allowlist and the certificates the allowlist applies to."""

    user_id: int
    # Lowercase hex SHA-256 of the user's usable certificates that the serial prefix does not cover (those of the
    # managed CA).
    fingerprints: tuple[str, ...]
    networks: tuple[str, ...]  # CIDRs or addresses, IPv4 and IPv6; an empty tuple means "from anywhere"
    # What the serials of the user's usable portal-CA certificates start with (the zone's marker and the user's
    # tag, 16 uppercase hex digits); empty when the user holds none.
    serial_prefix: str = ""


@dataclass(frozen=True)
class FirewallInputs:
    hostnames: tuple[str, ...]  # PORTAL_API_HOSTNAMES
    # Every managed-CA certificate the portal issued and considers usable (active, owner active, not expired): on
    # the protected hostnames no other certificate passes, unless a portal CA signed it.
    allowed_fingerprints: tuple[str, ...]
    bindings: tuple[UserBinding, ...]
    # The Subject Key Identifiers (uppercase hex) of the portal CAs Cloudflare trusts (status "trusted").
    portal_issuers: tuple[str, ...] = ()
    # What every serial the portal CAs sign for this zone starts with (8 uppercase hex digits); empty when no
    # portal CA has signed for it.
    serial_marker: str = ""
    # Serials (uppercase hex) of the portal-CA certificates that have not expired but must not pass: revoked, in
    # any other unusable status, or owned by a deactivated user.
    denied_serials: tuple[str, ...] = ()


@dataclass(frozen=True)
class DesiredRule:
    ref: str
    expression: str
    description: str
    action: str = "block"


@dataclass(frozen=True)
class BindingRulePlacement:
    """What a binding rule in the zone holds: user ids from its description (None if unreadable), the
    fingerprints and serial prefixes in it, and the expression text itself (to tell unchanged clauses from
    changed ones)."""

    user_ids: frozenset[int] | None
    fingerprints: frozenset[str]
    expression: str
    serial_prefixes: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Placement:
    """How the rules in the zone split the work now: the allow and deny ranges' lower bounds, users per binding
    rule."""

    allow: tuple[str, ...] = ()
    bind: Mapping[int, BindingRulePlacement] = field(default_factory=dict)
    deny: tuple[str, ...] = ()  # uppercase, as serials are


@dataclass(frozen=True)
class LeftOut:
    """What did not fit in the rules the zone has room for (empty when everything fits)."""

    # Allow ranges without a rule: verified certificates with fingerprints there are not checked against
    # the portal's list.
    allow_ranges: int = 0
    # Users whose allowlist is not (or not entirely) enforced: their certificates work from anywhere.
    user_ids: tuple[int, ...] = ()
    needed: int = 0
    allowed: int = 0
    # Serials of portal-CA certificates that must not pass but do: revoked ones among them.
    denied_serials: int = 0
    # The issuer rule did not fit: a portal CA's certificates pass without the zone's marker.
    issuer_rule: bool = False

    def __bool__(self) -> bool:
        return bool(self.allow_ranges or self.user_ids or self.denied_serials or self.issuer_rule)

    @property
    def reason(self) -> str:
        if not self:
            return ""
        return (
            f"the zone's rule limit leaves room for {self.allowed} of the {self.needed} rules the portal needs "
            "(CLOUDFLARE_CUSTOM_RULES_LIMIT, counting other teams' rules)"
        )

    def as_dict(self) -> dict[str, object]:
        if not self:
            return {}
        return {
            "allow_ranges": self.allow_ranges,
            "user_ids": list(self.user_ids),
            "denied_serials": self.denied_serials,
            "issuer_rule": self.issuer_rule,
            "needed": self.needed,
            "allowed": self.allowed,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class CompiledRules:
    rules: list[DesiredRule]
    left_out: LeftOut


class FirewallCompileError(ValueError):
    """The inputs cannot be compiled into valid rules (the message says why)."""


class RuleBudgetExceeded(FirewallCompileError):
    """The zone has no room even for the base rule; no rules were produced."""

    def __init__(self, message: str, *, needed: int, allowed: int) -> None:
        super().__init__(message)
        self.needed = needed
        self.allowed = allowed


# --------------------------------------------------------------------------------------------------
# Reading the rules back from the zone


def placement_of(rules: Iterable[tuple[str, str, str]]) -> Placement:
    """Recover the placement from the portal's rules as they are in the zone: ``(ref, expression, description)``.

    Refs are recognised by their suffix (``allow_<lo>``, ``deny_<lo>``, ``bind_<n>``), so the caller passes only
    the rules whose ref has the portal's prefix. Rules edited by hand are tolerated: an unparseable expression
    gives an empty placement for that rule, an unreadable description makes the binding rule fall back to the
    fingerprints and serial prefixes in its expression. The placement only steers where keys go; it never
    affects what the compiled rules enforce.
    """
    allow: set[str] = set()
    deny: set[str] = set()
    bind: dict[int, BindingRulePlacement] = {}
    for ref, expression, description in rules:
        if (low := _ref_suffix(_ALLOW_REF_SUFFIX, ref)) is not None:
            allow.add(low)
        elif (low := _ref_suffix(_DENY_REF_SUFFIX, ref)) is not None:
            deny.add(low.upper())
        elif (number := _ref_suffix(_BIND_REF_SUFFIX, ref)) is not None:
            fingerprints, prefixes = _identities_in(expression)
            holds_someone = bool(fingerprints or prefixes)
            bind[int(number)] = BindingRulePlacement(
                user_ids=_user_ids_in(description) if holds_someone else frozenset(),
                fingerprints=fingerprints,
                expression=expression if holds_someone else "",
                serial_prefixes=prefixes,
            )
    return Placement(allow=tuple(sorted(allow)), bind=bind, deny=tuple(sorted(deny)))


def _ref_suffix(pattern: re.Pattern[str], ref: str) -> str | None:
    match = pattern.search(ref)
    return None if match is None else match.group(1)


def _identities_in(expression: str) -> tuple[frozenset[str], frozenset[str]]:
    """The fingerprints and the serial prefixes a binding rule names (nothing if Cloudflare's parser refuses it)."""
    try:
        parsed = octorules_wirefilter.parse_expression(expression)
    except Exception:  # the parser is foreign code; a hand-edited rule must never stop a sync
        return frozenset(), frozenset()
    if not isinstance(parsed, dict) or parsed.get("error"):
        return frozenset(), frozenset()
    literals = parsed.get("string_literals") or ()
    fingerprints = frozenset(value for value in literals if isinstance(value, str) and _FINGERPRINT.fullmatch(value))
    return fingerprints, frozenset(_SERIAL_PREFIX_IN_RULE.findall(expression))


def _user_ids_in(description: str) -> frozenset[int] | None:
    match = _BIND_USERS.search(description or "")
    if match is None:
        return None
    return frozenset(int(user_id) for user_id in match.group(1).split())


# --------------------------------------------------------------------------------------------------
# Compiling


def compile_rules(
    inputs: FirewallInputs, *, prefix: str, max_rules: int, previous: Placement | None = None
) -> CompiledRules:
    """The portal's desired rules: base, issuer, deny ranges, allow ranges, binding rules, as many as fit.

    Raises ``RuleBudgetExceeded`` when not even the base rule fits, and ``FirewallCompileError`` for inputs no rule
    can express (malformed fingerprint, serial or key identifier, duplicate user, hostnames too long to leave room
    for anything else).
    """
    if not prefix:
        raise FirewallCompileError("the rule ref prefix must not be empty: it is how the portal's rules are found")
    hostnames = _normalized_hostnames(inputs.hostnames)
    if not hostnames:
        return CompiledRules([], LeftOut())
    if max_rules < 1:
        raise RuleBudgetExceeded(
            "The zone has no room for the portal's base rule: other rules use the whole limit.",
            needed=1,
            allowed=max_rules,
        )
    previous = previous or Placement()
    scope = _scope(hostnames)
    issuers, marker = _portal_cas(inputs)

    room = max_rules - (2 if issuers else 1)  # after the base rule and the issuer rule
    denied = sorted({_normalized_hex(serial, _SERIAL, "a certificate serial") for serial in inputs.denied_serials})
    deny_ranges = _deny_ranges(scope, denied, previous.deny, room=room)
    # With a portal CA trusted the allow rules judge only the other issuers' certificates.
    allow_base = And(scope, Not(CERT_ISSUER_SKI.in_(StringSet(issuers)))) if issuers else scope
    allowed = sorted(set(_normalized_fingerprints(inputs.allowed_fingerprints)))
    allow_ranges = _allow_ranges(allow_base, allowed, previous.allow, room=room - len(deny_ranges))
    clauses = _binding_clauses(scope, inputs.bindings)
    bind_bins = sorted(_pack_bindings(scope, clauses, previous, max_rules).items())

    # Built once the ranges have checked that the hostnames leave room in a rule, which says so clearly.
    head = _head_rules(prefix, scope, issuers, marker)
    heads, denies, allows, binds = _within(max_rules, [len(head), len(deny_ranges), len(allow_ranges), len(bind_bins)])
    left_out = LeftOut(
        allow_ranges=len(allow_ranges) - allows,
        user_ids=tuple(_unique_users(clause for _, members in bind_bins[binds:] for clause in members)),
        needed=len(head) + len(deny_ranges) + len(allow_ranges) + len(bind_bins),
        allowed=max_rules,
        denied_serials=sum(len(serials) for _, _, serials in deny_ranges[denies:]),
        issuer_rule=heads < len(head),
    )
    rules = head[:heads]
    rules += [_deny_rule(prefix, scope, low, serials) for low, _, serials in deny_ranges[:denies]]
    rules += [_allow_rule(prefix, allow_base, *allow_range) for allow_range in allow_ranges[:allows]]
    rules += [_bind_rule(prefix, scope, number, members) for number, members in bind_bins[:binds]]
    return CompiledRules(rules, left_out)


def _within(max_rules: int, wanted: Sequence[int]) -> list[int]:
    """How many rules of each kind, in order of priority, fit in ``max_rules``: the first kinds in full."""
    kept: list[int] = []
    for count in wanted:
        kept.append(min(count, max_rules - sum(kept)))
    return kept


def _portal_cas(inputs: FirewallInputs) -> tuple[list[str], str]:
    """The trusted portal CAs' key identifiers and the zone's marker, normalized."""
    issuers = sorted({_normalized_hex(ski, _SKI, "a Subject Key Identifier") for ski in inputs.portal_issuers})
    marker = _normalized_serial_prefix(inputs.serial_marker) if inputs.serial_marker.strip() else ""
    return issuers, marker


def _head_rules(prefix: str, scope: Expression, issuers: Sequence[str], marker: str) -> list[DesiredRule]:
    base = And(scope, Or(Not(CERT_VERIFIED.is_true()), CERT_REVOKED.is_true()))
    head = [_rule(prefix + BASE, base, BASE_DESCRIPTION)]
    if issuers:
        head.append(_issuer_rule(prefix, scope, issuers, marker))
    return head


def _issuer_rule(prefix: str, scope: Expression, issuers: Sequence[str], marker: str) -> DesiredRule:
    """A certificate of a trusted portal CA without this zone's marker in its serial."""
    from_portal_ca = CERT_ISSUER_SKI.in_(StringSet(issuers))
    if not marker:
        return _rule(prefix + ISSUER, And(scope, from_portal_ca), ISSUER_UNUSED_DESCRIPTION)
    expression = And(scope, from_portal_ca, Not(CERT_SERIAL.starts_with(marker)))
    return _rule(prefix + ISSUER, expression, ISSUER_DESCRIPTION.format(marker=marker))


def _bind_rule(prefix: str, scope: Expression, number: int, members: list[_Clause]) -> DesiredRule:
    members.sort(key=_Clause.sort_key)
    description = BIND_DESCRIPTION.format(users=" ".join(str(user) for user in _unique_users(members)))
    expression = And(scope, Or(*(clause.expression for clause in members)))
    return _rule(f"{prefix}{BIND}_{number}", expression, description)


def _deny_rule(prefix: str, scope: Expression, low: str, serials: list[str]) -> DesiredRule:
    description = DENY_DESCRIPTION.format(count=len(serials), first=serials[0], last=serials[-1])
    return _rule(f"{prefix}{DENY}_{low.lower()}", And(scope, _hex_set(CERT_SERIAL, serials)), description)


def _allow_rule(prefix: str, base: Expression, low: str, high: str | None, fingerprints: list[str]) -> DesiredRule:
    description = ALLOW_DESCRIPTION.format(count=len(fingerprints), low=low, high=high or "f…f")
    return _rule(f"{prefix}{ALLOW}_{low}", _allow_expression(base, low, high, fingerprints), description)


def _allow_expression(base: Expression, low: str, high: str | None, fingerprints: Sequence[str]) -> Expression:
    """``(base [and fp ge low] [and fp lt high] [and not fp in {...}])``: blocks, in the range, every
    fingerprint not listed (and with no fingerprint listed, every one). ``base`` is the scope, and with a portal
    CA trusted also ``not cert_issuer_ski in {...}``."""
    conditions: list[Expression] = []
    if low != FIRST_BOUND:
        conditions.append(CERT_FINGERPRINT_SHA256.ge(low))
    if high is not None:
        conditions.append(CERT_FINGERPRINT_SHA256.lt(high))
    if fingerprints:
        conditions.append(Not(_fingerprint_set(fingerprints)))
    if not conditions:
        conditions.append(CERT_VERIFIED.is_true())  # the portal has no usable certificate: none passes
    return And(base, *conditions)


def allowlist_fits(hostnames: Sequence[str], networks: Sequence[str]) -> bool:
    """Whether a binding clause with these networks, one fingerprint and a serial prefix fits in a rule.

    A user whose allowlist does not fit cannot be enforced per network; the compiler then blocks that
    user's certificates from everywhere (failing closed) rather than failing the whole zone. The allowlist
    form can call this to refuse such a list up front.
    """
    normalized = _normalized_hostnames(hostnames)
    if not normalized or not networks:
        return True
    scope = _scope(normalized)
    return _Clause.cost_for(1, _OWNER_PREFIX_LENGTH, _network_condition(tuple(networks))) <= _bind_capacity(scope)


def _rule(ref: str, expression: Expression, description: str) -> DesiredRule:
    text = expression.render()
    if len(text) != expression.length or len(text) > MAX_EXPRESSION_LENGTH:
        raise AssertionError(f"{ref}: rendered {len(text)} characters, expected {expression.length}")  # a bug
    _validate_once(text)
    return DesiredRule(ref=ref, expression=text, description=description)


# Expressions that passed validate(), most recently used last. validate() depends on the text alone, so a
# text seen before needs no new check; a sync usually changes one rule, and validating ~2,000 large rules
# costs about a second (mostly validate's scan for empty sets, in Python). Bounded: Enterprise zones have
# at most 1,000 custom rules.
_VALIDATED: dict[str, None] = {}
_VALIDATED_MAX = 4096
_VALIDATED_LOCK = threading.Lock()


def _validate_once(text: str) -> None:
    with _VALIDATED_LOCK:
        if _VALIDATED.pop(text, False) is None:
            _VALIDATED[text] = None  # seen before: move to the most recently used end
            return
    validate(text)  # raises ExpressionError: a bug in the compiler, never returned to the caller as a rule
    with _VALIDATED_LOCK:
        while len(_VALIDATED) >= _VALIDATED_MAX:
            _VALIDATED.pop(next(iter(_VALIDATED)))
        _VALIDATED[text] = None


def clear_caches() -> None:
    """Forget validated expressions, built allowlist sets and prefix tests (for benchmarks and tests)."""
    with _VALIDATED_LOCK:
        _VALIDATED.clear()
    _network_condition.cache_clear()
    _serial_prefix_test.cache_clear()


def _scope(hostnames: Sequence[str]) -> Expression:
    """The protected hostnames as a client may write its Host header: `http.host` is the header as sent (FACTS.md
    §14), so a trailing dot (a fully qualified name) or any port, ``api.example.com.:8443``, is still the API.

    ``lower(http.host) in {"h" "h."} or lower(http.host) starts with "h:" or "h.:"`` (a prefix by string order).
    """
    exact = Lower(HTTP_HOST).in_(StringSet([name for hostname in hostnames for name in (hostname, hostname + ".")]))
    with_port = [
        Lower(HTTP_HOST).starts_with(f"{name}:") for hostname in hostnames for name in (hostname, hostname + ".")
    ]
    return Or(exact, *with_port)


def _normalized_hostnames(hostnames: Iterable[str]) -> tuple[str, ...]:
    if isinstance(hostnames, str):
        raise TypeError("hostnames must be a sequence of hostnames, not a single string")
    # A fully qualified name's trailing dot is one of the spellings _scope adds: the bare name is the one kept.
    return tuple(sorted({hostname.strip().lower().rstrip(".") for hostname in hostnames if hostname.strip(". ")}))


def _normalized_fingerprints(fingerprints: Sequence[str]) -> list[str]:
    # The usual case, all already normalized, is checked with one regular-expression call: a large zone
    # has 100,000 fingerprints. With the length check the join cannot hide a bad value: the text then has
    # exactly one newline per value, all from the join, so each value is 64 hex digits on its own.
    joined = "\n".join(fingerprints) + "\n"
    if len(joined) == (_FINGERPRINT_LENGTH + 1) * len(fingerprints) and _FINGERPRINTS.fullmatch(joined):
        return list(fingerprints)
    return [_normalized_fingerprint(fingerprint) for fingerprint in fingerprints]


def _normalized_fingerprint(fingerprint: str) -> str:
    normalized = fingerprint.lower().replace(":", "")  # "AB:CD:..." is how tools print them
    if not _FINGERPRINT.fullmatch(normalized):
        raise FirewallCompileError(f"{fingerprint!r} is not a SHA-256 fingerprint (64 hex digits)")
    return normalized


def _normalized_hex(value: str, pattern: re.Pattern[str], what: str) -> str:
    """A serial or key identifier as the rule fields show them: uppercase hex without separators (FACTS.md §6)."""
    normalized = value.strip().upper().replace(":", "")
    if not pattern.fullmatch(normalized):
        raise FirewallCompileError(f"{value!r} is not {what} in hex")
    return normalized


def _normalized_serial_prefix(prefix: str) -> str:
    return _normalized_hex(prefix, _SERIAL, "the start of a certificate serial")


def _hex_set(field: Field, values: Sequence[str]) -> Comparison:
    """``<field> in {"<value>" ...}`` for sorted, unique, normalized hex values (fingerprints, serials).

    Same text as ``field.in_(StringSet(values))``: a value of hex digits needs no escaping, so its quoted form is
    the value in double quotes.
    """
    if not values:
        raise AssertionError("empty set")  # a bug: callers never build one
    return Comparison(field, "in", '{"' + '" "'.join(values) + '"}')


def _fingerprint_set(fingerprints: Sequence[str]) -> Comparison:
    return _hex_set(CERT_FINGERPRINT_SHA256, fingerprints)


@lru_cache(maxsize=65536)
def _network_condition(networks: tuple[str, ...]) -> Expression:
    """``not ip.src in {...}``; cached because allowlists are often shared (an office network) and IPSet's
    normalisation costs tens of microseconds per set."""
    try:
        return Not(IP_SRC.in_(IPSet(networks)))
    except ValueError as exc:
        raise FirewallCompileError(f"allowlist {list(networks)}: {exc}") from exc


# --------------------------------------------------------------------------------------------------
# Sizes. Every formula is derived from the builder's exact lengths of sample expressions, so it stays
# right if the builder's spacing changes; _rule checks each rendered rule against the computed length.


def _bind_capacity(scope: Expression) -> int:
    """Room for clauses in a binding rule, where each clause costs its length plus " or "."""
    # (scope and (c1 or c2 ...)): measure the overhead with two sample clauses. A rule with one clause is
    # rendered flattened and is shorter, so this is exact for two or more clauses and safe for one.
    sample = _fingerprint_set([_SAMPLE_FINGERPRINT])
    overhead = joined_length([scope, Or(sample, sample)], "and") - 2 * sample.length - _OR_SEPARATOR
    return MAX_EXPRESSION_LENGTH - overhead + _OR_SEPARATOR


@lru_cache(maxsize=64)
def _sample_clause_length(fingerprints: bool, prefix_length: int, bound: bool) -> int:
    """The length of a binding clause with one fingerprint (or none), a serial prefix of that length (or none)
    and the sample allowlist (or none): a clause's length is this plus what its own sets add."""
    sample_prefix = "1" * prefix_length  # uppercase hex: its bound above has the same length (Field.starts_with)
    networks = _network_condition(_SAMPLE_NETWORKS) if bound else None
    return _clause_expression([_SAMPLE_FINGERPRINT] if fingerprints else [], sample_prefix, networks).length


def _deny_capacity(scope: Expression, serial_length: int) -> int:
    """Serials of up to ``serial_length`` digits a deny rule can list within 4,096 characters."""
    one = And(scope, _hex_set(CERT_SERIAL, ["1" * serial_length])).length
    if one > MAX_EXPRESSION_LENGTH:
        raise FirewallCompileError(
            f"the protected hostnames take {scope.length} characters and leave no room for a serial in "
            f"a {MAX_EXPRESSION_LENGTH}-character rule; protect fewer hostnames"
        )
    return 1 + (MAX_EXPRESSION_LENGTH - one) // (serial_length + len('"" '))


def _allow_capacity(base: Expression, low: str, high: str | None) -> int:
    """Fingerprints an allow rule for ``[low, high)`` can list within 4,096 characters."""
    one = _allow_expression(base, low, high, [_SAMPLE_FINGERPRINT]).length
    if one > MAX_EXPRESSION_LENGTH:
        raise FirewallCompileError(
            f"the protected hostnames and the portal CAs take {base.length} characters and leave no room for a "
            f"fingerprint in a {MAX_EXPRESSION_LENGTH}-character rule; protect fewer hostnames"
        )
    return 1 + (MAX_EXPRESSION_LENGTH - one) // _PER_FINGERPRINT


# --------------------------------------------------------------------------------------------------
# Ranges: the allow rules split the fingerprint space, the deny rules the serial space.


_Range = tuple[str, str | None, list[str]]


def _allow_ranges(base: Expression, allowed: list[str], previous: Sequence[str], *, room: int) -> list[_Range]:
    def capacity(low: str, high: str | None) -> int:
        return _allow_capacity(base, low, high)

    # Parts are sized for rules with both bounds written (a bound is a few hex digits), so that they fit at once
    # instead of each overflowing by a fingerprint and splitting again into halves.
    return _ranges(allowed, previous, capacity, sized=capacity(_SAMPLE_BOUND, _SAMPLE_BOUND), room=room)


def _deny_ranges(scope: Expression, denied: list[str], previous: Sequence[str], *, room: int) -> list[_Range]:
    """Like the allow ranges, but a deny rule writes no bounds (it lists serials only), and a range with no
    serial left has no rule: its neighbour below takes its span at the next compile."""
    if not denied:
        return []
    each = _deny_capacity(scope, max(len(serial) for serial in denied))
    ranges = _ranges(denied, previous, lambda low, high: each, sized=each, room=room)
    return [(low, high, serials) for low, high, serials in ranges if serials]


def _ranges(
    values: list[str], previous: Sequence[str], capacity: Callable[[str, str | None], int], *, sized: int, room: int
) -> list[_Range]:
    """Split the sorted, unique values into ranges ``[low, high)`` that each fit in one rule.

    Stable: the lower bounds of the rules in the zone are kept, so a new or removed value changes the rule of its
    own range. A range that grows past one rule is split into as few even parts of at most ``sized`` values as
    fit, at the shortest bounds that separate them; neighbours that together fill less than half a rule are
    merged back; and when there are more ranges than ``room`` rules, the smallest neighbours are merged while they
    fit.
    """
    bounds = sorted({FIRST_BOUND, *(bound for bound in previous if bound != FIRST_BOUND)})
    ranges = [(low, high, _in_range(values, low, high)) for low, high in zip(bounds, [*bounds[1:], None], strict=True)]
    split: list[_Range] = []
    while ranges:
        low, high, members = ranges.pop(0)
        if len(members) <= capacity(low, high):
            split.append((low, high, members))
            continue
        parts = -(-len(members) // sized)
        cuts = [len(members) * part // parts for part in range(1, parts)]
        edges: list[str | None] = [low, *(_separating_bound(members[cut - 1], members[cut]) for cut in cuts), high]
        starts = [0, *cuts, len(members)]
        # Checked again: a longer bound leaves a little less room in its rule.
        ranges[:0] = [(str(edges[i]), edges[i + 1], members[starts[i] : starts[i + 1]]) for i in range(parts)]
    merged = _merge_neighbours(split, capacity, lambda most, combined: combined <= most // 2)
    while len(merged) > max(room, 1):
        fewer = _merge_neighbours(merged, capacity, lambda most, combined: combined <= most, once=True)
        if len(fewer) == len(merged):
            break
        merged = fewer
    return merged


def _in_range(values: list[str], low: str, high: str | None) -> list[str]:
    start = 0 if low == FIRST_BOUND else bisect.bisect_left(values, low)
    end = len(values) if high is None else bisect.bisect_left(values, high)
    return values[start:end]


def _separating_bound(below: str, above: str) -> str:
    """The shortest prefix of ``above`` that sorts after ``below``: every value starting with it, and
    ``above`` itself, is at or past it, and ``below`` is not."""
    for length in range(1, len(above) + 1):
        if above[:length] > below:
            return above[:length]
    raise AssertionError("values must be unique")  # a bug: sorted unique input guarantees a bound


def _merge_neighbours(
    ranges: list[_Range],
    capacity: Callable[[str, str | None], int],
    acceptable: Callable[[int, int], bool],
    *,
    once: bool = False,
) -> list[_Range]:
    """Merge adjacent ranges whose union is ``acceptable``; with ``once``, only the smallest such pair."""
    if once:
        pairs = [
            (len(ranges[i][2]) + len(ranges[i + 1][2]), i)
            for i in range(len(ranges) - 1)
            if acceptable(capacity(ranges[i][0], ranges[i + 1][1]), len(ranges[i][2]) + len(ranges[i + 1][2]))
        ]
        if not pairs:
            return ranges
        _, i = min(pairs)
        (low, _, first), (_, high, second) = ranges[i], ranges[i + 1]
        return [*ranges[:i], (low, high, first + second), *ranges[i + 2 :]]
    merged: list[_Range] = []
    for low, high, members in ranges:
        if merged:
            previous_low, _, previous_members = merged[-1]
            combined = len(previous_members) + len(members)
            if acceptable(capacity(previous_low, high), combined):
                merged[-1] = (previous_low, high, previous_members + members)
                continue
        merged.append((low, high, members))
    return merged


# --------------------------------------------------------------------------------------------------
# Binding clauses


def _clause_expression(fingerprints: Sequence[str], serial_prefix: str, networks: Expression | None) -> Expression:
    """``((fp in {...} or <serial starts with prefix>) and not ip.src in {...})``, with either identity alone when
    the other is empty, and without the networks when the certificates are blocked outright."""
    identities: list[Expression] = []
    if fingerprints:
        identities.append(_fingerprint_set(fingerprints))
    if serial_prefix:
        identities.append(_serial_prefix_test(serial_prefix))
    certificates = Or(*identities)
    return certificates if networks is None else And(certificates, networks)


@lru_cache(maxsize=65536)
def _serial_prefix_test(prefix: str) -> Expression:
    """Cached like ``_network_condition``: a sync builds every user's clause, and ``quote``'s checks of each
    character are a third of a compile of 10,000 users with portal-CA certificates."""
    return CERT_SERIAL.starts_with(prefix)


@dataclass
class _Clause:
    """One user's binding clause (or one piece of it when the user's certificates need several clauses)."""

    user_id: int
    chunk: int
    fingerprints: list[str]
    serial_prefix: str  # the user's portal-CA certificates; only in the user's first clause, "" in the others
    networks: Expression | None  # None: the allowlist cannot fit in a rule, so block the certificates outright
    cost: int

    @staticmethod
    def cost_for(count: int, prefix_length: int, networks: Expression | None) -> int:
        length = _sample_clause_length(count > 0, prefix_length, networks is not None)
        if count > 1:
            length += _PER_FINGERPRINT * (count - 1)
        if networks is not None:
            length += networks.length - _network_condition(_SAMPLE_NETWORKS).length
        return length + _OR_SEPARATOR

    @property
    def key(self) -> tuple[int, int]:
        return (self.user_id, self.chunk)

    @staticmethod
    def sort_key(clause: _Clause) -> tuple[int, int]:
        return (clause.user_id, clause.chunk)

    @property
    def identities(self) -> list[str]:
        return [*self.fingerprints, self.serial_prefix] if self.serial_prefix else self.fingerprints

    @property
    def expression(self) -> Expression:
        return _clause_expression(self.fingerprints, self.serial_prefix, self.networks)

    def text(self) -> str:
        # The clause as it appears inside a rule, without the parentheses a lone conjunction loses when the
        # rule is flattened: "fp in {...} and not ip.src in {...}".
        expression = self.expression
        rendered = expression.render()
        return rendered[1:-1] if isinstance(expression, AllOf) else rendered


def _binding_clauses(scope: Expression, bindings: Iterable[UserBinding]) -> list[_Clause]:
    capacity = _bind_capacity(scope)
    clauses: list[_Clause] = []
    seen: set[int] = set()
    for binding in bindings:
        if binding.user_id in seen:
            raise FirewallCompileError(f"user {binding.user_id} has more than one binding")
        seen.add(binding.user_id)
        if not binding.networks:
            continue  # an empty allowlist allows any address: nothing to enforce
        fingerprints = sorted(set(_normalized_fingerprints(binding.fingerprints))) if binding.fingerprints else []
        serial_prefix = _normalized_serial_prefix(binding.serial_prefix) if binding.serial_prefix else ""
        if not fingerprints and not serial_prefix:
            continue  # no usable certificate: the other rules block the others
        networks: Expression | None
        try:
            networks = _network_condition(tuple(binding.networks))
        except FirewallCompileError:
            # One user's unusable allowlist must not stop the whole zone's rules (revocations among them):
            # block that user's certificates from everywhere instead.
            networks = None
        smallest = _Clause.cost_for(1 if fingerprints else 0, len(serial_prefix), networks)
        if networks is not None and smallest > capacity:
            networks = None  # fail closed for this user only; see allowlist_fits
        clauses.extend(_clauses_of(binding.user_id, fingerprints, serial_prefix, networks, capacity))
    return clauses


def _clauses_of(
    user_id: int, fingerprints: list[str], serial_prefix: str, networks: Expression | None, capacity: int
) -> Iterable[_Clause]:
    """The user's clauses: the first with the serial prefix and as many fingerprints as fit, then the other
    fingerprints, as many a clause as fit."""
    start, chunk, prefix = 0, 0, serial_prefix
    while chunk == 0 or start < len(fingerprints):
        count = 0
        if fingerprints:
            count = 1 + (capacity - _Clause.cost_for(1, len(prefix), networks)) // _PER_FINGERPRINT
        part = fingerprints[start : start + count]
        yield _Clause(user_id, chunk, part, prefix, networks, _Clause.cost_for(len(part), len(prefix), networks))
        start, chunk, prefix = start + len(part), chunk + 1, ""


def _unique_users(clauses: Iterable[_Clause]) -> list[int]:
    return sorted({clause.user_id for clause in clauses})


# --------------------------------------------------------------------------------------------------
# Packing


class _Packer:
    """Stable first-fit packing of items into numbered bins of one capacity.

    1. Sticky: each item whose key sat in a bin before stays there if it still fits. Within a bin, items
       that are unchanged go first, so when a bin overflows it is a changed item that moves.
    2. New and moved items go, in key order, into the lowest-numbered open bin with room (a max segment
       tree over bin numbers finds it in O(log n)); a new bin takes the lowest unused number.
    Bins left empty are dropped. The outcome depends only on the items and the previous placement.
    """

    def __init__(self, capacity: int, size: int) -> None:
        self.capacity = capacity
        self.leaves = 1
        while self.leaves < size + 1:
            self.leaves *= 2
        self.tree = [-1] * (2 * self.leaves)  # free room per bin; -1 means not open
        self.used: dict[int, int] = {}
        self.members: dict[int, list[_Clause]] = {}

    def _set(self, number: int, free: int) -> None:
        position = number + self.leaves
        self.tree[position] = free
        position //= 2
        while position:
            self.tree[position] = max(self.tree[2 * position], self.tree[2 * position + 1])
            position //= 2

    def fits(self, number: int, cost: int) -> bool:
        return self.used.get(number, 0) + cost <= self.capacity

    def put(self, number: int, item: _Clause, cost: int) -> None:
        self.used[number] = self.used.get(number, 0) + cost
        self.members.setdefault(number, []).append(item)
        self._set(number, self.capacity - self.used[number])

    def first_fit(self, item: _Clause, cost: int, unused: list[int]) -> None:
        if self.tree[1] >= cost:
            position = 1
            while position < self.leaves:
                position = 2 * position if self.tree[2 * position] >= cost else 2 * position + 1
            self.put(position - self.leaves, item, cost)
            return
        while True:
            number = heapq.heappop(unused)
            if number not in self.used:
                break
        self.put(number, item, cost)

    def unused_numbers(self) -> list[int]:
        numbers = [number for number in range(1, self.leaves) if number not in self.used]
        heapq.heapify(numbers)
        return numbers


def _usable_previous(numbers: Iterable[int], limit: int) -> list[int]:
    # A number beyond the budget cannot be kept anyway (bins are numbered from 1 without gaps when packed
    # fresh); ignoring it also keeps a hand-made "bind_99999999" from sizing the packer.
    return sorted(number for number in numbers if number <= limit)


def _pack_bindings(
    scope: Expression, clauses: list[_Clause], previous: Placement, max_rules: int
) -> dict[int, list[_Clause]]:
    numbers = _usable_previous(previous.bind, max_rules)
    packer = _Packer(_bind_capacity(scope), len(clauses) + (numbers[-1] if numbers else 0))
    sticky = _sticky_bins(clauses, previous, numbers)
    moving: list[_Clause] = []
    by_bin: dict[int, list[_Clause]] = {}
    for clause in clauses:
        number = sticky.get(clause.key)
        if number is None:
            moving.append(clause)
        else:
            by_bin.setdefault(number, []).append(clause)
    for number, candidates in sorted(by_bin.items()):
        if sum(clause.cost for clause in candidates) > packer.capacity:
            # Overflow: keep the clauses that are unchanged (their text is in the rule as it is now) so
            # that the changed ones are the ones that move. Only here is a clause rendered for packing.
            before = previous.bind[number].expression
            candidates.sort(key=lambda clause: clause.text() not in before)
        for clause in candidates:
            if packer.fits(number, clause.cost):
                packer.put(number, clause, clause.cost)
            else:
                moving.append(clause)
    moving.sort(key=_Clause.sort_key)
    unused = packer.unused_numbers()
    for clause in moving:
        packer.first_fit(clause, clause.cost, unused)
    return packer.members


def _sticky_bins(clauses: list[_Clause], previous: Placement, numbers: list[int]) -> dict[tuple[int, int], int]:
    """For each clause, the bin it stays in if it fits: a user's n-th clause goes to the n-th of the bins
    that held the user before."""
    if not numbers:
        return {}
    bins_of_user: dict[int, list[int]] = {}
    by_identity: dict[str, list[int]] = {}
    for number in numbers:
        placement = previous.bind[number]
        if placement.user_ids is not None:
            for user_id in placement.user_ids:
                bins_of_user.setdefault(user_id, []).append(number)
        else:  # description edited by hand: recognise users by their certificates instead
            for identity in placement.fingerprints | placement.serial_prefixes:
                by_identity.setdefault(identity, []).append(number)
    if by_identity:
        for clause in clauses:
            for identity in clause.identities:
                for number in by_identity.get(identity, ()):
                    found = bins_of_user.setdefault(clause.user_id, [])
                    if number not in found:
                        found.append(number)
    sticky: dict[tuple[int, int], int] = {}
    for clause in clauses:
        found = sorted(bins_of_user.get(clause.user_id, ()))
        if clause.chunk < len(found):
            sticky[clause.key] = found[clause.chunk]
    return sticky
