"""A small evaluator for the subset of Cloudflare's Rules language that the firewall compiler emits.

It reads the rendered TEXT of a rule (what Cloudflare receives), not the builder's objects, so tests of
the compiler check the expressions themselves. Supported:

* ``a and b``, ``a or b``, ``not a``, parentheses; ``not`` binds tightest, then ``and``, then ``or``
  (wirefilter's precedence);
* ``<field> in {<members>}`` with quoted strings (``\\"`` and ``\\\\`` escapes) or IP literals
  (single addresses and CIDRs, IPv4 and IPv6);
* bare boolean fields (``cf.tls_client_auth.cert_verified``);
* ``lower(<string field>) in {...}``;
* ``<string field> lt|le|gt|ge|eq "<string>"`` (byte-wise order).

Anything else raises ``EvaluatorError``, so an unexpected construct fails the test instead of being
misread.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

STRING_FIELDS = {"http.host", "cf.tls_client_auth.cert_fingerprint_sha256"}
IP_FIELDS = {"ip.src"}
BOOL_FIELDS = {"cf.tls_client_auth.cert_verified", "cf.tls_client_auth.cert_revoked"}


class EvaluatorError(ValueError):
    pass


# String ordering is byte-wise, like Python's for the ASCII the portal writes.
_COMPARE = {"lt": str.__lt__, "le": str.__le__, "gt": str.__gt__, "ge": str.__ge__, "eq": str.__eq__}
_ORDERINGS = {("word", operator) for operator in _COMPARE}


@dataclass(frozen=True)
class Request:
    host: str
    ip: IPAddress
    verified: bool = True
    revoked: bool = False
    fingerprint: str = ""

    def fields(self) -> dict[str, Any]:
        return {
            "http.host": self.host,
            "ip.src": self.ip,
            "cf.tls_client_auth.cert_verified": self.verified,
            "cf.tls_client_auth.cert_revoked": self.revoked,
            "cf.tls_client_auth.cert_fingerprint_sha256": self.fingerprint,
        }


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<punct>[(){}])
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


class _Parser:
    def __init__(self, expression: str) -> None:
        self.tokens = tokenize(expression)
        self.position = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

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
        while self.peek() == ("word", "or"):
            self.take()
            operands.append(self.conjunction())
        return ("or", operands) if len(operands) > 1 else operands[0]

    def conjunction(self) -> Any:
        operands = [self.unary()]
        while self.peek() == ("word", "and"):
            self.take()
            operands.append(self.unary())
        return ("and", operands) if len(operands) > 1 else operands[0]

    def unary(self) -> Any:
        if self.peek() == ("word", "not"):
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
        lowered = value == "lower"
        if lowered:
            self.expect("(")
            value = self.take()[1]
            self.expect(")")
            if value not in STRING_FIELDS:
                raise EvaluatorError(f"lower() needs a string field, got {value!r}")
        if value not in STRING_FIELDS | IP_FIELDS:
            raise EvaluatorError(f"unknown field {value!r}")
        if value in STRING_FIELDS and self.peek() in _ORDERINGS:
            operator = self.take()[1]
            literal_kind, literal = self.take()
            if literal_kind != "string":
                raise EvaluatorError(f"{operator} needs a string, got {literal!r}")
            return ("order", value, operator, _unquote(literal), lowered)
        self.expect("in")
        self.expect("{")
        members: list[Any] = []
        while self.peek() != ("punct", "}"):
            member_kind, member = self.take()
            if value in STRING_FIELDS:
                if member_kind != "string":
                    raise EvaluatorError(f"{value} set needs strings, got {member!r}")
                members.append(_unquote(member))
            else:
                if member_kind != "word":
                    raise EvaluatorError(f"{value} set needs IP literals, got {member!r}")
                members.append(ipaddress.ip_network(member, strict=True))
        self.take()
        if not members:
            raise EvaluatorError("empty set")
        return ("in", value, frozenset(members) if value in STRING_FIELDS else tuple(members), lowered)


def parse(expression: str) -> Any:
    return _Parser(expression).parse()


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
    if kind == "order":
        _, field, operator, literal, lowered = node
        value = fields[field].lower() if lowered else fields[field]
        return bool(_COMPARE[operator](value, literal))
    _, field, members, lowered = node
    value = fields[field].lower() if lowered else fields[field]
    if field in IP_FIELDS:
        return any(value.version == network.version and value in network for network in members)
    return value in members


def matches(expression: str, request: Request) -> bool:
    return evaluate(parse(expression), request.fields())


def blocked(expressions: list[str], request: Request) -> bool:
    """All the portal's rules block, so a request is blocked when any rule matches."""
    return any(matches(expression, request) for expression in expressions)
