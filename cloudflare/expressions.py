"""Build Cloudflare Rules-language expressions that are correct by construction.

The firewall compiler assembles WAF custom-rule expressions from these nodes instead of formatting
strings, so quoting, set syntax, parentheses and the 4,096-character limit are handled in one place.
Every node is an immutable value whose rendered length is known without rendering it, which lets a
packer decide cheaply whether one more clause still fits into a rule.

Rendering rules (chosen to match the rule shapes in DESIGN.md "Firewall layout"):

* A conjunction always renders in parentheses: ``(a and b)``. That makes every clause self-delimiting,
  so OR-ing clauses together never needs precedence reasoning and a clause's length does not depend on
  where it is placed.
* A disjunction renders bare, ``a or b``, and is wrapped in parentheses only where it is an operand of
  a conjunction or a negation: ``(a and (b or c))``, ``not (a or b)``.
* Nested conjunctions (and nested disjunctions) are flattened, and a double negation cancels out.

``validate`` checks finished expression strings with Cloudflare's own parser (``octorules_wirefilter``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from itertools import pairwise
from typing import Any, Generic, Literal, TypeAlias, TypeVar, overload

import octorules_wirefilter

__all__ = [
    "CERT_FINGERPRINT_SHA256",
    "CERT_ISSUER_SKI",
    "CERT_PRESENTED",
    "CERT_REVOKED",
    "CERT_SERIAL",
    "CERT_VERIFIED",
    "HTTP_HOST",
    "IP_SRC",
    "MAX_EXPRESSION_LENGTH",
    "AllOf",
    "And",
    "AnyOf",
    "Comparison",
    "EmptySetError",
    "Expression",
    "ExpressionError",
    "Field",
    "FieldIsTrue",
    "IPSet",
    "Negation",
    "Not",
    "Or",
    "StringSet",
    "joined_length",
    "quote",
    "render",
    "validate",
]

# Source: Cloudflare docs, ruleset-engine "max-expression-length" (FACTS.md section 6).
MAX_EXPRESSION_LENGTH = 4096

IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
IPValue: TypeAlias = str | IPNetwork | IPAddress
Operator: TypeAlias = Literal["and", "or"]


_T = TypeVar("_T")


class lazy_property(Generic[_T]):
    """``functools.cached_property`` without the lock Python 3.11 takes on every first access (3.12 dropped
    it); the compiler builds tens of thousands of nodes, and the lock was a third of its time."""

    def __init__(self, function: Callable[[Any], _T]) -> None:
        self.function = function
        self.name = function.__name__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> lazy_property[_T]: ...

    @overload
    def __get__(self, instance: object, owner: type | None = None) -> _T: ...

    def __get__(self, instance: object | None, owner: type | None = None) -> _T | lazy_property[_T]:
        if instance is None:
            return self
        value = self.function(instance)
        instance.__dict__[self.name] = value  # frozen dataclasses still have a __dict__
        return value


class ExpressionError(ValueError):
    """An expression (or a value for one) that Cloudflare would reject or that we refuse to build."""


class EmptySetError(ExpressionError):
    """An inline set with no members.

    Cloudflare's parser accepts ``ip.src in {}``, but an empty set silently matches nothing, which in a
    ``not ip.src in {...}`` clause would block every request; refusing it is the safe default.
    """


# --------------------------------------------------------------------------------------------------
# Strings


def _is_safe_character(char: str) -> bool:
    # Printable ASCII only. The parser itself accepts raw control characters and newlines inside a
    # quoted string, but a rule containing them is unreadable in the dashboard and easy to mis-copy.
    # Non-ASCII is refused too: it is not documented whether the 4,096 limit counts characters or
    # UTF-8 bytes, and every value we put in a rule (hostnames in IDNA form, hex fingerprints and
    # serials) is ASCII anyway.
    return " " <= char <= "~"


def quote(value: str) -> str:
    """Return ``value`` as a Rules-language quoted string, escaping ``\\`` and ``"``."""
    unsafe = sorted({char for char in value if not _is_safe_character(char)})
    if unsafe:
        shown = ", ".join(f"U+{ord(char):04X}" for char in unsafe)
        raise ExpressionError(f"{value!r} contains characters a rule cannot safely hold: {shown}")
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


# --------------------------------------------------------------------------------------------------
# Inline sets


def _render_set(members: Sequence[str]) -> str:
    return "{" + " ".join(members) + "}"


@dataclass(frozen=True)
class StringSet:
    """An inline set of strings: deduplicated, sorted (so renders are stable), ``{"a" "b"}``."""

    values: tuple[str, ...]

    def __init__(self, values: Iterable[str]) -> None:
        if isinstance(values, str):
            # A bare string is an iterable of characters; that is never what the caller meant.
            raise TypeError("StringSet needs an iterable of strings, not a single string")
        unique = tuple(sorted(set(values)))
        if not unique:
            raise EmptySetError("a string set needs at least one value")
        object.__setattr__(self, "values", unique)

    @lazy_property
    def _quoted(self) -> tuple[str, ...]:
        return tuple(quote(value) for value in self.values)

    def render(self) -> str:
        return _render_set(self._quoted)

    @lazy_property
    def length(self) -> int:
        return _set_length(self._quoted)


def _set_length(members: Sequence[str]) -> int:
    # Braces plus one space between neighbours.
    return 2 + sum(len(member) for member in members) + len(members) - 1


def _parse_network(value: IPValue) -> IPNetwork:
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        network = value
    elif isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        network = ipaddress.ip_network(value)
    else:
        network = _parse_network_text(value)
    if isinstance(network, ipaddress.IPv6Network) and network.network_address.scope_id is not None:
        # Python accepts "fe80::1%eth0"; a zone index means nothing to Cloudflare.
        raise ExpressionError(f"{value} has an IPv6 zone index, which a rule cannot match")
    return network


def _parse_network_text(text: str) -> IPNetwork:
    try:
        # Pick the family from the text: ip_network() tries IPv4 first and pays for an exception on IPv6.
        if ":" in text:
            return ipaddress.IPv6Network(text, strict=True)
        return ipaddress.IPv4Network(text, strict=True)
    except ValueError:
        pass
    try:
        intended = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ExpressionError(f"{text!r} is not an IP address or network") from None
    # Cloudflare's parser rejects such a CIDR too; say which value and what was probably meant.
    raise ExpressionError(f"{text} has host bits set; did you mean {intended}?")


def _render_network(network: IPNetwork) -> str:
    # A single host is written as a bare address, the way people read it; the parser accepts both.
    if network.prefixlen == network.max_prefixlen:
        return network.network_address.compressed
    return network.compressed


_Network = TypeVar("_Network", ipaddress.IPv4Network, ipaddress.IPv6Network)


def _collapse(networks: list[_Network]) -> list[_Network]:
    """``ipaddress.collapse_addresses``, skipped when nothing overlaps or merges (the usual allowlist):
    integer arithmetic tells that far faster than the collapse takes."""
    if len(networks) < 2:
        return networks
    bounds = sorted((int(network.network_address), network.num_addresses, network) for network in networks)
    for (start, size, _), (next_start, next_size, _) in pairwise(bounds):
        overlaps = next_start < start + size
        halves_of_one = size == next_size and next_start == start + size and start % (2 * size) == 0
        if overlaps or halves_of_one:
            return list(ipaddress.collapse_addresses(networks))
    return [network for _, _, network in bounds]


@dataclass(frozen=True)
class IPSet:
    """An inline set of IPv4/IPv6 addresses and CIDRs, e.g. ``{192.0.2.0/24 2001:db8::/32}``.

    Networks are collapsed with ``ipaddress.collapse_addresses``: contained networks are dropped and
    adjacent ones merged (``192.0.2.0/25`` + ``192.0.2.128/25`` -> ``192.0.2.0/24``). Membership is
    unchanged and the rule gets shorter, which matters under the 4,096-character limit. The result is
    sorted, IPv4 before IPv6, and IPv6 is written compressed and lowercase.
    """

    networks: tuple[IPNetwork, ...]

    def __init__(self, networks: Iterable[IPValue]) -> None:
        if isinstance(networks, str):
            raise TypeError("IPSet needs an iterable of addresses or networks, not a single string")
        parsed = [_parse_network(value) for value in networks]
        if not parsed:
            raise EmptySetError("an IP set needs at least one address or network")
        v4 = [network for network in parsed if isinstance(network, ipaddress.IPv4Network)]
        v6 = [network for network in parsed if isinstance(network, ipaddress.IPv6Network)]
        collapsed: list[IPNetwork] = [*_collapse(v4), *_collapse(v6)]
        object.__setattr__(self, "networks", tuple(collapsed))

    @lazy_property
    def _members(self) -> tuple[str, ...]:
        return tuple(_render_network(network) for network in self.networks)

    def render(self) -> str:
        return _render_set(self._members)

    @lazy_property
    def length(self) -> int:
        return _set_length(self._members)


# --------------------------------------------------------------------------------------------------
# Fields


@cache
def _schema_field_types() -> dict[str, str]:
    schema = octorules_wirefilter.get_schema_info()
    return {str(entry["name"]): str(entry["type"]) for entry in schema["fields"]}


@dataclass(frozen=True)
class Field:
    """A field reference such as ``ip.src``, checked against Cloudflare's schema when created."""

    name: str

    def __post_init__(self) -> None:
        if self.name not in _schema_field_types():
            raise ExpressionError(f"unknown Rules-language field {self.name!r}")

    @property
    def type(self) -> str:
        """The schema type: ``STRING``, ``IP``, ``BOOL``, ``INT``, ..."""
        return _schema_field_types()[self.name]

    def eq(self, value: IPValue) -> Comparison:
        return Comparison(self, "eq", self._render_scalar(value))

    def ne(self, value: IPValue) -> Comparison:
        return Comparison(self, "ne", self._render_scalar(value))

    def ge(self, value: str) -> Comparison:
        return self._ordered("ge", value)

    def lt(self, value: str) -> Comparison:
        return self._ordered("lt", value)

    def _ordered(self, operator: Literal["ge", "lt"], value: str) -> Comparison:
        # The Rules language orders strings (byte-wise) and numbers; the portal compares strings only, to split
        # the fingerprint space into ranges (certificates/firewall/compiler.py).
        self._require_type("STRING", operator)
        return Comparison(self, operator, quote(value))

    def in_(self, set_: StringSet | IPSet) -> Comparison:
        self._require_type("STRING" if isinstance(set_, StringSet) else "IP", "in")
        return Comparison(self, "in", set_.render())

    def starts_with(self, prefix: str) -> Expression:
        """``f ge "<prefix>" and f lt "<prefix with its last character one higher>"``: a prefix test with string
        order alone (see ``Lower.starts_with``), exact for every value, since no character lies between a
        character and the next one. The bound need not be a value itself: for the portal's uppercase hex serials
        the character after "9" is ":" and after "F" is "G"."""
        self._require_type("STRING", "starts_with")
        if not prefix:
            raise ExpressionError("a prefix must not be empty")
        return And(Comparison(self, "ge", quote(prefix)), Comparison(self, "lt", quote(_successor(prefix))))

    def is_true(self) -> FieldIsTrue:
        self._require_type("BOOL", "is_true")
        return FieldIsTrue(self)

    def _render_scalar(self, value: IPValue) -> str:
        if self.type == "STRING" and isinstance(value, str):
            return quote(value)
        self._require_type("IP", "eq/ne")
        network = _parse_network(value)
        if network.prefixlen != network.max_prefixlen:
            raise ExpressionError(f"{self.name} eq/ne needs a single address, not the network {value}")
        return _render_network(network)

    def _require_type(self, expected: str, operation: str) -> None:
        if self.type != expected:
            raise ExpressionError(f"{operation} needs a {expected} field; {self.name} is {self.type}")


@dataclass(frozen=True)
class Lower:
    """``lower(<string field>)``: string comparisons are case-sensitive, and a client chooses the case of
    its Host header, so hostnames are compared lowercased (Cloudflare's own example: ``lower(http.host)``)."""

    field: Field

    def __post_init__(self) -> None:
        self.field._require_type("STRING", "lower")

    @property
    def name(self) -> str:
        return f"lower({self.field.name})"

    def in_(self, set_: StringSet) -> Comparison:
        if any(value != value.lower() for value in set_.values):
            raise ExpressionError("lower(...) never equals a value with uppercase letters")
        return Comparison(self, "in", set_.render())

    def eq(self, value: str) -> Comparison:
        if value != value.lower():
            raise ExpressionError("lower(...) never equals a value with uppercase letters")
        return Comparison(self, "eq", quote(value))

    def starts_with(self, prefix: str) -> Expression:
        """``lower(f) ge "<prefix>" and lower(f) lt "<prefix with its last character one higher>"``: a prefix
        test with string order alone, which every plan has (functions such as starts_with() are not on all)."""
        if not prefix or prefix != prefix.lower():
            raise ExpressionError("a prefix of lower(...) must be non-empty and lowercase")
        return And(Comparison(self, "ge", quote(prefix)), Comparison(self, "lt", quote(_successor(prefix))))


def _successor(prefix: str) -> str:
    """The shortest string above every string that starts with ``prefix``: its last character one higher. (A
    prefix ending in "~" would need DEL, which ``quote`` refuses: no value the portal tests ends so.)"""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


# --------------------------------------------------------------------------------------------------
# Expression nodes


class Expression:
    """Base of all expression nodes. ``str()`` renders; ``len()`` is the exact rendered length."""

    def render(self) -> str:
        raise NotImplementedError

    @property
    def length(self) -> int:
        raise NotImplementedError

    def __str__(self) -> str:
        return self.render()

    def __len__(self) -> int:
        return self.length

    def __and__(self, other: Expression) -> Expression:
        return And(self, other)

    def __or__(self, other: Expression) -> Expression:
        return Or(self, other)

    def __invert__(self) -> Expression:
        return Not(self)


@dataclass(frozen=True)
class FieldIsTrue(Expression):
    """A bare boolean field used as a condition, e.g. ``cf.tls_client_auth.cert_verified``."""

    field: Field

    def render(self) -> str:
        return self.field.name

    @property
    def length(self) -> int:
        return len(self.field.name)


@dataclass(frozen=True)
class Comparison(Expression):
    """``<field> <operator> <operand>``; ``operand`` is already rendered (quoted string, IP or set)."""

    field: Field | Lower
    operator: Literal["eq", "ne", "in", "ge", "lt"]
    operand: str

    def render(self) -> str:
        return f"{self.field.name} {self.operator} {self.operand}"

    @lazy_property
    def length(self) -> int:
        return len(self.field.name) + len(self.operator) + len(self.operand) + 2


@dataclass(frozen=True)
class Negation(Expression):
    """``not <operand>``; build with ``Not``/``~`` so double negations cancel."""

    operand: Expression

    def render(self) -> str:
        if isinstance(self.operand, AnyOf):
            return f"not ({self.operand.render()})"
        return f"not {self.operand.render()}"

    @lazy_property
    def length(self) -> int:
        parentheses = 2 if isinstance(self.operand, AnyOf) else 0
        return len("not ") + self.operand.length + parentheses


@dataclass(frozen=True)
class AllOf(Expression):
    """A conjunction, always rendered in parentheses: ``(a and b ...)``. Build with ``And``/``&``."""

    operands: tuple[Expression, ...]

    def render(self) -> str:
        return "(" + " and ".join(_render_operand(operand, "and") for operand in self.operands) + ")"

    @lazy_property
    def length(self) -> int:
        return 2 + _joined_operand_length(self.operands, "and")


@dataclass(frozen=True)
class AnyOf(Expression):
    """A disjunction, rendered bare: ``a or b ...``. Build with ``Or``/``|``."""

    operands: tuple[Expression, ...]

    def render(self) -> str:
        return " or ".join(_render_operand(operand, "or") for operand in self.operands)

    @lazy_property
    def length(self) -> int:
        return _joined_operand_length(self.operands, "or")


def _needs_parentheses(operand: Expression, operator: Operator) -> bool:
    # A disjunction inside a conjunction must be wrapped, since "and" binds tighter than "or".
    # A conjunction never needs extra parentheses: it carries its own.
    return operator == "and" and isinstance(operand, AnyOf)


def _render_operand(operand: Expression, operator: Operator) -> str:
    if _needs_parentheses(operand, operator):
        return f"({operand.render()})"
    return operand.render()


def _operand_length(operand: Expression, operator: Operator) -> int:
    return operand.length + (2 if _needs_parentheses(operand, operator) else 0)


def _joined_operand_length(operands: Sequence[Expression], operator: Operator) -> int:
    separator = len(f" {operator} ")
    return sum(_operand_length(operand, operator) for operand in operands) + separator * (len(operands) - 1)


def _flatten(operands: Iterable[Expression], operator: Operator) -> tuple[Expression, ...]:
    # (a and (b and c)) is written (a and b and c); likewise for "or". Flattening only one level is
    # enough because every node was flattened when it was built.
    node_type = AllOf if operator == "and" else AnyOf
    flat: list[Expression] = []
    for operand in operands:
        if not isinstance(operand, Expression):
            raise TypeError(f"{operator} operands must be expressions, got {type(operand).__name__}")
        if isinstance(operand, node_type):
            flat.extend(operand.operands)
        else:
            flat.append(operand)
    if not flat:
        raise ExpressionError(f"'{operator}' needs at least one operand")
    return tuple(flat)


# And/Or/Not are capitalised like classes because they read as the operators they build; they are
# functions so that a single operand, or a double negation, can return a simpler node.


def And(*operands: Expression) -> Expression:
    """Conjunction of ``operands``; a single operand is returned as is."""
    flat = _flatten(operands, "and")
    return flat[0] if len(flat) == 1 else AllOf(flat)


def Or(*operands: Expression) -> Expression:
    """Disjunction of ``operands``; a single operand is returned as is."""
    flat = _flatten(operands, "or")
    return flat[0] if len(flat) == 1 else AnyOf(flat)


def Not(operand: Expression) -> Expression:
    """Negation of ``operand``; ``Not(Not(x))`` is ``x``."""
    if not isinstance(operand, Expression):
        raise TypeError(f"not operand must be an expression, got {type(operand).__name__}")
    if isinstance(operand, Negation):
        return operand.operand
    return Negation(operand)


def joined_length(clauses: Sequence[Expression], operator: Operator) -> int:
    """Exact length of ``render(And(*clauses))`` or ``render(Or(*clauses))``, without rendering.

    For ``"or"`` this is simply the clause lengths plus four per separator, so a packer can also keep
    a running total: adding a clause to a non-empty disjunction costs ``len(" or ") + len(clause)``.
    """
    flat = _flatten(clauses, operator)
    if len(flat) == 1:
        return flat[0].length
    parentheses = 2 if operator == "and" else 0
    return parentheses + _joined_operand_length(flat, operator)


def render(expression: Expression) -> str:
    return expression.render()


# --------------------------------------------------------------------------------------------------
# Validation of finished expression strings


def validate(expression: str) -> None:
    """Raise ``ExpressionError`` unless Cloudflare would accept ``expression`` and it is safe.

    Checks the 4,096-character limit, Cloudflare's parser, and (as a policy of ours, since the parser
    allows it) that there is no empty inline set outside string literals.
    """
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise ExpressionError(
            f"expression is {len(expression)} characters; Cloudflare allows at most {MAX_EXPRESSION_LENGTH}"
        )
    result = octorules_wirefilter.parse_expression(expression)
    error = result.get("error")
    if error:
        raise ExpressionError(f"Cloudflare's parser rejected the expression: {error}")
    if _has_empty_inline_set(expression):
        raise EmptySetError("expression contains an empty inline set {}")


def _has_empty_inline_set(expression: str) -> bool:
    # Fast path: string literals are replaced by a non-empty placeholder below, which can never bring a "{"
    # and a "}" together, so text without "{}" (whitespace aside) has no empty set.
    if "{}" not in "".join(expression.split()):
        return False
    # Only called on text the parser accepted, so braces outside string literals are inline sets.
    outside_strings = "".join(_code_outside_string_literals(expression))
    return "{}" in "".join(outside_strings.split())


_STRING_PLACEHOLDER = '""'


def _code_outside_string_literals(expression: str) -> Iterable[str]:
    """Yield ``expression`` with each ``"..."``, ``r"..."`` or ``r#"..."#`` literal replaced by ``""``.

    The placeholder keeps ``{"a"}`` from looking like ``{}`` once the literal's text is gone.
    """
    position = 0
    while position < len(expression):
        raw = _raw_string_opening(expression, position)
        if raw is not None:
            hashes = raw - position - 2  # the opening is r, the hashes, then a quote
            closing = '"' + "#" * hashes
            end = expression.find(closing, raw)
            position = len(expression) if end == -1 else end + len(closing)
            yield _STRING_PLACEHOLDER
        elif expression[position] == '"':
            position = _end_of_quoted_string(expression, position)
            yield _STRING_PLACEHOLDER
        else:
            yield expression[position]
            position += 1


def _raw_string_opening(expression: str, position: int) -> int | None:
    """If a raw string ``r#*"`` starts at ``position``, return the index just after its quote."""
    if expression[position] != "r" or (position > 0 and _is_identifier_character(expression[position - 1])):
        return None
    cursor = position + 1
    while cursor < len(expression) and expression[cursor] == "#":
        cursor += 1
    if cursor < len(expression) and expression[cursor] == '"':
        return cursor + 1
    return None


def _is_identifier_character(char: str) -> bool:
    return char.isalnum() or char in "._"


def _end_of_quoted_string(expression: str, opening: int) -> int:
    position = opening + 1
    while position < len(expression):
        if expression[position] == "\\":
            position += 2  # an escape always consumes the next character, even a quote
        elif expression[position] == '"':
            return position + 1
        else:
            position += 1
    return len(expression)


# --------------------------------------------------------------------------------------------------
# The fields the portal's firewall rules use (FACTS.md section 6).

HTTP_HOST = Field("http.host")
IP_SRC = Field("ip.src")
CERT_PRESENTED = Field("cf.tls_client_auth.cert_presented")
CERT_VERIFIED = Field("cf.tls_client_auth.cert_verified")
CERT_REVOKED = Field("cf.tls_client_auth.cert_revoked")
CERT_FINGERPRINT_SHA256 = Field("cf.tls_client_auth.cert_fingerprint_sha256")
CERT_SERIAL = Field("cf.tls_client_auth.cert_serial")
CERT_ISSUER_SKI = Field("cf.tls_client_auth.cert_issuer_ski")
