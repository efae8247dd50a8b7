"""An evaluator for the subset of Cloudflare's Rules language that the portal's rules use.

The emulator runs it over a zone's custom rules (`edge.py`), and the compiler's tests run it over the
rendered TEXT of the rules (what Cloudflare receives), not the builder's objects. Supported:

* ``a and b``, ``a or b``, ``not a`` (and ``&&``, ``||``, ``!``), parentheses; ``not`` binds tightest,
  then ``and``, then ``or`` (wirefilter's precedence);
* ``<field> in {<members>}`` with quoted strings (``\\"`` and ``\\\\`` escapes) or IP literals
  (single addresses and CIDRs, IPv4 and IPv6);
* ``<field> <op> <literal>`` with ``eq ne lt le gt ge`` (or ``== != < <= > >=``): strings compare
  lexicographically, as wirefilter compares bytes; IP fields take ``eq`` and ``ne`` only;
* bare boolean fields (``cf.tls_client_auth.cert_verified``);
* ``lower(<string field>)`` wherever a string field may stand.

Anything else (another field, function or operator) raises ``EvaluatorError``, so an unexpected construct
fails loudly instead of being misread.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

STRING_FIELDS = {
    "http.host",
    "cf.tls_client_auth.cert_fingerprint_sha256",
    # FACTS.md §6: uppercase hex, as the certificate itself gives them (the serial without leading zeros).
    "cf.tls_client_auth.cert_serial",
    "cf.tls_client_auth.cert_issuer_ski",
}
IP_FIELDS = {"ip.src"}
BOOL_FIELDS = {
    "cf.tls_client_auth.cert_presented",
    "cf.tls_client_auth.cert_verified",
    "cf.tls_client_auth.cert_revoked",
}
COMPARISONS = {"eq": "eq", "==": "eq", "ne": "ne", "!=": "ne", "lt": "lt", "<": "lt"}
COMPARISONS |= {"le": "le", "<=": "le", "gt": "gt", ">": "gt", "ge": "ge", ">=": "ge"}
AND, OR, NOT = {"and", "&&"}, {"or", "||"}, {"not", "!"}


class EvaluatorError(ValueError):
    pass


@dataclass(frozen=True)
class Request:
    """The fields a rule can see; a request without a certificate has presented=verified=False and empty strings
    (FACTS.md §6: every cf.tls_client_auth field defaults to false or "" without mTLS)."""

    host: str
    ip: IPAddress
    verified: bool = True
    revoked: bool = False
    fingerprint: str = ""
    presented: bool = True
    serial: str = ""  # uppercase hex
    issuer_ski: str = ""  # uppercase hex, the direct issuer's Subject Key Identifier

    def fields(self) -> dict[str, Any]:
        return {
            "http.host": self.host,
            "ip.src": self.ip,
            "cf.tls_client_auth.cert_presented": self.presented,
            "cf.tls_client_auth.cert_verified": self.verified,
            "cf.tls_client_auth.cert_revoked": self.revoked,
            "cf.tls_client_auth.cert_fingerprint_sha256": self.fingerprint,
            "cf.tls_client_auth.cert_serial": self.serial,
            "cf.tls_client_auth.cert_issuer_ski": self.issuer_ski,
        }


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<punct>[(){}])
      | (?P<op>==|!=|<=|>=|&&|\|\||<|>|!)
      | (?P<word>[A-Za-z0-9_.:/]+)
    )""",
    re.VERBOSE,
)


def tokenize(expression: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    expression = expression.rstrip()
    while position < len(expression):
        match = _TOKEN.match(expression, position)
        if match is None or match.end() == position:
            raise EvaluatorError(f"cannot read {expression[position : position + 20]!r} at {position}")
        kind = match.lastgroup
        assert kind is not None
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


def _unquote(literal: str) -> str:
    body = literal[1:-1]
    return re.sub(r"\\(.)", r"\1", body)


def _network(literal: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(literal, strict=True)
    except ValueError as exc:
        raise EvaluatorError(f"{literal!r} is not an IP address or CIDR this evaluator reads") from exc


class _Parser:
    def __init__(self, expression: str) -> None:
        self.tokens = tokenize(expression)
        self.position = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def peek_value(self) -> str | None:
        token = self.peek()
        return token[1] if token is not None and token[0] in ("word", "op") else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise EvaluatorError("unexpected end of expression")
        self.position += 1
        return token

    def expect(self, value: str) -> None:
        token = self.take()
        if token[1] != value:
            raise EvaluatorError(f"expected {value!r}, got {token[1]!r}")

    def parse(self) -> Any:
        node = self.disjunction()
        if self.peek() is not None:
            raise EvaluatorError(f"unexpected {self.peek()!r}")
        return node

    def disjunction(self) -> Any:
        operands = [self.conjunction()]
        while self.peek_value() in OR:
            self.take()
            operands.append(self.conjunction())
        return ("or", operands) if len(operands) > 1 else operands[0]

    def conjunction(self) -> Any:
        operands = [self.unary()]
        while self.peek_value() in AND:
            self.take()
            operands.append(self.unary())
        return ("and", operands) if len(operands) > 1 else operands[0]

    def unary(self) -> Any:
        if self.peek_value() in NOT:
            self.take()
            return ("not", self.unary())
        return self.primary()

    def primary(self) -> Any:
        kind, value = self.take()
        if (kind, value) == ("punct", "("):
            node = self.disjunction()
            self.expect(")")
            return node
        if kind != "word":
            raise EvaluatorError(f"unexpected {value!r}")
        if value in BOOL_FIELDS:
            return ("bool", value)
        field, lowered = self.field(value)
        operator = self.take()[1]
        if operator == "in":
            return ("in", field, self.members(field), lowered)
        if operator in COMPARISONS:
            return self.comparison(field, COMPARISONS[operator], lowered)
        raise EvaluatorError(f"unsupported operator {operator!r} after {field}")

    def field(self, value: str) -> tuple[str, bool]:
        lowered = value == "lower"
        if lowered:
            self.expect("(")
            value = self.take()[1]
            self.expect(")")
            if value not in STRING_FIELDS:
                raise EvaluatorError(f"lower() needs a string field, got {value!r}")
        if value not in STRING_FIELDS | IP_FIELDS:
            raise EvaluatorError(f"unknown field {value!r}")
        return value, lowered

    def members(self, field: str) -> Any:
        self.expect("{")
        members: list[Any] = []
        while self.peek() != ("punct", "}"):
            member_kind, member = self.take()
            if field in STRING_FIELDS:
                if member_kind != "string":
                    raise EvaluatorError(f"{field} set needs strings, got {member!r}")
                members.append(_unquote(member))
            else:
                if member_kind != "word":
                    raise EvaluatorError(f"{field} set needs IP literals, got {member!r}")
                members.append(_network(member))
        self.take()
        if not members:
            raise EvaluatorError("empty set")
        return frozenset(members) if field in STRING_FIELDS else tuple(members)

    def comparison(self, field: str, operator: str, lowered: bool) -> Any:
        literal_kind, literal = self.take()
        if field in STRING_FIELDS:
            if literal_kind != "string":
                raise EvaluatorError(f"{field} compares with a quoted string, got {literal!r}")
            return ("cmp", field, operator, _unquote(literal), lowered)
        if operator not in ("eq", "ne") or literal_kind != "word":
            raise EvaluatorError(f"{field} takes eq or ne with an IP address")
        try:
            address = ipaddress.ip_address(literal)
        except ValueError as exc:
            raise EvaluatorError(f"{field} {operator} needs one IP address, got {literal!r}") from exc
        return ("cmp", field, operator, address, lowered)


def parse(expression: str) -> Any:
    return _Parser(expression).parse()


def _compare(value: Any, operator: str, literal: Any) -> bool:
    results: dict[str, bool] = {
        "eq": value == literal,
        "ne": value != literal,
        "lt": value < literal,
        "le": value <= literal,
        "gt": value > literal,
        "ge": value >= literal,
    }
    return results[operator]


def evaluate(node: Any, fields: Mapping[str, Any]) -> bool:
    kind = node[0]
    if kind == "or":
        return any(evaluate(operand, fields) for operand in node[1])
    if kind == "and":
        return all(evaluate(operand, fields) for operand in node[1])
    if kind == "not":
        return not evaluate(node[1], fields)
    if kind == "bool":
        return bool(fields[node[1]])
    _, field, *rest, lowered = node
    value = fields[field].lower() if lowered else fields[field]
    if kind == "cmp":
        operator, literal = rest
        return _compare(value, operator, literal)
    (members,) = rest
    if field in IP_FIELDS:
        return any(value.version == network.version and value in network for network in members)
    return value in members


def matches(expression: str, request: Request) -> bool:
    return evaluate(parse(expression), request.fields())


def blocked(expressions: list[str], request: Request) -> bool:
    """All the portal's rules block, so a request is blocked when any rule matches."""
    return any(matches(expression, request) for expression in expressions)
