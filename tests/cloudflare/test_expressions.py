"""Tests for the Rules-language expression builder, checked against Cloudflare's own parser."""

from __future__ import annotations

import ipaddress
import itertools
from typing import Any

import octorules_wirefilter
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloudflare.expressions import (
    CERT_FINGERPRINT_SHA256,
    CERT_PRESENTED,
    CERT_REVOKED,
    CERT_SERIAL,
    CERT_VERIFIED,
    HTTP_HOST,
    IP_SRC,
    MAX_EXPRESSION_LENGTH,
    AllOf,
    And,
    AnyOf,
    EmptySetError,
    Expression,
    ExpressionError,
    Field,
    FieldIsTrue,
    IPSet,
    Negation,
    Not,
    Or,
    StringSet,
    joined_length,
    quote,
    render,
    validate,
)

FINGERPRINT = "af363dc8" * 8


def parse(expression: str) -> dict[str, Any]:
    """Parse with Cloudflare's parser and fail the test if it refuses."""
    result: dict[str, Any] = octorules_wirefilter.parse_expression(expression)
    assert "error" not in result, result["error"]
    return result


def networks_of(literals: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """What a list of IP literals means, in a canonical form (collapsed, v4 then v6)."""
    parsed = [ipaddress.ip_network(literal) for literal in literals]
    v4 = [network for network in parsed if isinstance(network, ipaddress.IPv4Network)]
    v6 = [network for network in parsed if isinstance(network, ipaddress.IPv6Network)]
    return [*ipaddress.collapse_addresses(v4), *ipaddress.collapse_addresses(v6)]


printable_ascii = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E))
hex_fingerprints = st.text("0123456789abcdef", min_size=64, max_size=64)


@st.composite
def ip_networks(draw: st.DrawFn) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    address = draw(st.ip_addresses())
    prefix = draw(st.integers(min_value=0, max_value=address.max_prefixlen))
    return ipaddress.ip_network(f"{address}/{prefix}", strict=False)


ip_values = st.one_of(
    ip_networks(),
    ip_networks().map(str),
    st.ip_addresses(),
    st.ip_addresses().map(str),
)


# --- Strings -----------------------------------------------------------------------------------------


def test_it_escapes_quotes_and_backslashes() -> None:
    assert quote('a"b\\c') == '"a\\"b\\\\c"'
    assert quote("") == '""'


@given(printable_ascii)
def test_it_round_trips_quoted_text_through_the_parser(value: str) -> None:
    result = parse(HTTP_HOST.eq(value).render())

    assert result["string_literals"] == [value]


@given(st.lists(printable_ascii, min_size=1, max_size=8))
def test_it_round_trips_string_set_members_through_the_parser(values: list[str]) -> None:
    result = parse(HTTP_HOST.in_(StringSet(values)).render())

    assert result["string_literals"] == sorted(set(values))


@pytest.mark.parametrize("value", ["a\nb", "a\rb", "tab\there", "nul\x00", "del\x7f", "\x1b[31m"])
def test_it_rejects_control_characters(value: str) -> None:
    with pytest.raises(ExpressionError, match="cannot safely hold"):
        quote(value)


@given(printable_ascii, st.characters(codec="utf-8").filter(lambda char: not " " <= char <= "~"), printable_ascii)
def test_it_rejects_any_text_with_a_character_outside_printable_ascii(before: str, unsafe: str, after: str) -> None:
    with pytest.raises(ExpressionError):
        quote(before + unsafe + after)


def test_it_rejects_non_ascii_because_the_length_limit_is_ambiguous_for_it() -> None:
    with pytest.raises(ExpressionError, match=r"U\+00E9"):
        quote("café.example")


# --- String sets ---------------------------------------------------------------------------------------


def test_it_dedupes_and_sorts_string_sets() -> None:
    assert StringSet(["b", "a", "b"]).render() == '{"a" "b"}'
    assert StringSet(["b", "a", "b"]).values == ("a", "b")


def test_it_refuses_an_empty_string_set() -> None:
    with pytest.raises(EmptySetError):
        StringSet([])


def test_it_refuses_a_bare_string_as_a_string_set() -> None:
    with pytest.raises(TypeError):
        StringSet("api.example.com")


# --- IP sets -------------------------------------------------------------------------------------------


def test_it_normalizes_ipv6_to_compressed_lowercase() -> None:
    assert IPSet(["2001:DB8:0:0::/32"]).render() == "{2001:db8::/32}"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("192.0.2.1/24", "192.0.2.1/24 has host bits set; did you mean 192.0.2.0/24?"),
        ("2001:db8::1/32", "2001:db8::1/32 has host bits set; did you mean 2001:db8::/32?"),
    ],
)
def test_it_rejects_host_bits_naming_the_value(value: str, message: str) -> None:
    with pytest.raises(ExpressionError) as raised:
        IPSet([value])

    assert str(raised.value) == message


@pytest.mark.parametrize("value", ["not-an-ip", "192.0.2.0/33", "192.0.2.0..192.0.2.9", "", " 192.0.2.1"])
def test_it_rejects_values_that_are_not_addresses_or_networks(value: str) -> None:
    with pytest.raises(ExpressionError, match="is not an IP address or network"):
        IPSet([value])


def test_it_rejects_ipv6_zone_indexes() -> None:
    with pytest.raises(ExpressionError, match="zone index"):
        IPSet(["fe80::1%eth0"])


def test_it_renders_single_hosts_without_a_prefix_length() -> None:
    ip_set = IPSet(["192.0.2.1/32", ipaddress.ip_address("2001:DB8::1"), "2001:db8::2/128"])

    assert ip_set.render() == "{192.0.2.1 2001:db8::1 2001:db8::2}"
    assert parse(IP_SRC.in_(ip_set).render())["ip_literals"] == ["192.0.2.1", "2001:db8::1", "2001:db8::2"]


def test_it_dedupes_and_sorts_ipv4_before_ipv6() -> None:
    ip_set = IPSet(["2001:db8::/32", "198.51.100.0/24", "192.0.2.0/24", "198.51.100.0/24", "2001:DB8::/32"])

    assert ip_set.render() == "{192.0.2.0/24 198.51.100.0/24 2001:db8::/32}"


def test_it_collapses_contained_and_adjacent_networks() -> None:
    ip_set = IPSet(["192.0.2.0/25", "192.0.2.128/25", "192.0.2.7", "2001:db8::/32", "2001:db8:1::/48"])

    assert ip_set.render() == "{192.0.2.0/24 2001:db8::/32}"


def test_it_refuses_an_empty_ip_set() -> None:
    with pytest.raises(EmptySetError):
        IPSet([])


@given(st.lists(ip_values, min_size=1, max_size=10))
def test_it_renders_ip_sets_the_parser_reads_as_the_networks_we_meant(values: list[Any]) -> None:
    ip_set = IPSet(values)
    result = parse(IP_SRC.in_(ip_set).render())

    assert networks_of(result["ip_literals"]) == list(ip_set.networks)
    assert networks_of([str(ipaddress.ip_network(value)) for value in values]) == list(ip_set.networks)


# --- Fields --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["http.hots", "ip.source", "cf.tls_client_auth.cert_fingerprint", ""])
def test_it_refuses_unknown_field_names(name: str) -> None:
    with pytest.raises(ExpressionError, match="unknown Rules-language field"):
        Field(name)


def test_it_knows_the_field_constants_types() -> None:
    assert {field.name: field.type for field in [HTTP_HOST, IP_SRC, CERT_SERIAL, CERT_PRESENTED]} == {
        "http.host": "STRING",
        "ip.src": "IP",
        "cf.tls_client_auth.cert_serial": "STRING",
        "cf.tls_client_auth.cert_presented": "BOOL",
    }


def test_it_renders_comparisons() -> None:
    assert HTTP_HOST.eq("api.example.com").render() == 'http.host eq "api.example.com"'
    assert CERT_SERIAL.ne("527E0F20").render() == 'cf.tls_client_auth.cert_serial ne "527E0F20"'
    assert IP_SRC.eq("2001:DB8::1").render() == "ip.src eq 2001:db8::1"
    assert CERT_PRESENTED.is_true().render() == "cf.tls_client_auth.cert_presented"


def test_it_refuses_operations_that_do_not_fit_the_field_type() -> None:
    with pytest.raises(ExpressionError, match="BOOL"):
        HTTP_HOST.is_true()
    with pytest.raises(ExpressionError, match="IP field"):
        HTTP_HOST.in_(IPSet(["192.0.2.0/24"]))
    with pytest.raises(ExpressionError, match="STRING field"):
        IP_SRC.in_(StringSet(["x"]))
    with pytest.raises(ExpressionError, match="single address"):
        IP_SRC.eq("192.0.2.0/24")


# --- And, Or, Not ----------------------------------------------------------------------------------------

verified = CERT_VERIFIED.is_true()
revoked = CERT_REVOKED.is_true()
presented = CERT_PRESENTED.is_true()


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        (verified & revoked, "(cf.tls_client_auth.cert_verified and cf.tls_client_auth.cert_revoked)"),
        (verified | revoked, "cf.tls_client_auth.cert_verified or cf.tls_client_auth.cert_revoked"),
        (~verified, "not cf.tls_client_auth.cert_verified"),
        (
            Not(Or(verified, revoked)),
            "not (cf.tls_client_auth.cert_verified or cf.tls_client_auth.cert_revoked)",
        ),
        (
            Not(And(verified, revoked)),
            "not (cf.tls_client_auth.cert_verified and cf.tls_client_auth.cert_revoked)",
        ),
        (
            And(presented, Or(verified, revoked)),
            "(cf.tls_client_auth.cert_presented and "
            "(cf.tls_client_auth.cert_verified or cf.tls_client_auth.cert_revoked))",
        ),
        (
            Or(presented, And(verified, revoked)),
            "cf.tls_client_auth.cert_presented or "
            "(cf.tls_client_auth.cert_verified and cf.tls_client_auth.cert_revoked)",
        ),
        (
            presented & verified & revoked,
            "(cf.tls_client_auth.cert_presented and cf.tls_client_auth.cert_verified"
            " and cf.tls_client_auth.cert_revoked)",
        ),
        (
            presented | verified | revoked,
            "cf.tls_client_auth.cert_presented or cf.tls_client_auth.cert_verified or cf.tls_client_auth.cert_revoked",
        ),
    ],
)
def test_it_renders_boolean_operators_with_the_parentheses_they_need(expression: Expression, expected: str) -> None:
    assert render(expression) == expected
    assert str(expression) == expected
    parse(expected)


def test_it_relies_on_the_same_precedence_as_the_parser() -> None:
    # The builder leaves "a or b and c" style groupings to precedence only where the parser agrees.
    assert parse(f"{presented} or {verified} and {revoked}")["top_level_op"] == "or"
    assert parse(f"not {presented} and {verified}")["top_level_op"] == "and"


def test_it_refuses_and_or_without_operands() -> None:
    with pytest.raises(ExpressionError):
        And()
    with pytest.raises(ExpressionError):
        Or()


def test_it_returns_a_single_operand_unchanged() -> None:
    assert And(verified) is verified
    assert Or(verified) is verified


def test_it_cancels_double_negation() -> None:
    assert Not(Not(verified)) is verified
    assert ~~verified is verified


def test_it_refuses_operands_that_are_not_expressions() -> None:
    with pytest.raises(TypeError):
        And(verified, "cf.tls_client_auth.cert_revoked")  # type: ignore[arg-type]


# --- Generated trees: precedence and length ----------------------------------------------------------------

BOOLEAN_FIELDS = [
    CERT_PRESENTED,
    CERT_VERIFIED,
    CERT_REVOKED,
    Field("cf.tls_client_auth.cert_rfc9440_too_large"),
    Field("cf.tls_client_auth.cert_chain_rfc9440_too_large"),
]


def trees(leaves: st.SearchStrategy[Expression]) -> st.SearchStrategy[Expression]:
    def compound(children: st.SearchStrategy[Expression]) -> st.SearchStrategy[Expression]:
        operands = st.lists(children, min_size=1, max_size=4)
        return st.one_of(
            operands.map(lambda items: And(*items)),
            operands.map(lambda items: Or(*items)),
            children.map(Not),
        )

    return st.recursive(leaves, compound, max_leaves=16)


boolean_trees = trees(st.sampled_from([field.is_true() for field in BOOLEAN_FIELDS]))

leaves = st.one_of(
    st.sampled_from(BOOLEAN_FIELDS).map(Field.is_true),
    printable_ascii.map(HTTP_HOST.eq),
    printable_ascii.map(CERT_SERIAL.ne),
    st.lists(hex_fingerprints, min_size=1, max_size=5).map(
        lambda values: CERT_FINGERPRINT_SHA256.in_(StringSet(values))
    ),
    st.lists(ip_values, min_size=1, max_size=5).map(lambda values: IP_SRC.in_(IPSet(values))),
)
mixed_trees = trees(leaves)


def evaluate(expression: Expression, truth: dict[str, bool]) -> bool:
    """What the tree means, independently of how it is rendered."""
    if isinstance(expression, FieldIsTrue):
        return truth[expression.field.name]
    if isinstance(expression, Negation):
        return not evaluate(expression.operand, truth)
    if isinstance(expression, AllOf):
        return all(evaluate(operand, truth) for operand in expression.operands)
    if isinstance(expression, AnyOf):
        return any(evaluate(operand, truth) for operand in expression.operands)
    raise AssertionError(f"unexpected node {expression!r}")


def evaluate_text(text: str, truth: dict[str, bool]) -> bool:
    """What the rendered text means. Python's not > and > or matches the Rules language's
    (checked against the parser in test_it_relies_on_the_same_precedence_as_the_parser)."""
    names = {field.name: f"v{index}" for index, field in enumerate(BOOLEAN_FIELDS)}
    for name, variable in names.items():
        text = text.replace(name, variable)
    variables = {names[name]: value for name, value in truth.items()}
    # Only our own rendering of and/or/not over generated variable names reaches eval.
    result: bool = eval(text, {"__builtins__": {}}, variables)  # noqa: S307
    return result


@given(boolean_trees)
def test_it_renders_trees_whose_meaning_survives_rendering(expression: Expression) -> None:
    text = render(expression)
    parse(text)

    for values in itertools.product([False, True], repeat=len(BOOLEAN_FIELDS)):
        truth = {field.name: value for field, value in zip(BOOLEAN_FIELDS, values, strict=True)}
        assert evaluate_text(text, truth) == evaluate(expression, truth)


@given(mixed_trees)
def test_it_computes_the_exact_rendered_length_without_rendering(expression: Expression) -> None:
    text = render(expression)

    assert expression.length == len(text)
    assert len(expression) == len(text)
    parse(text)


@given(st.lists(mixed_trees, min_size=1, max_size=6), st.sampled_from(["and", "or"]))
def test_it_predicts_the_length_of_joined_clauses(clauses: list[Expression], operator: str) -> None:
    joined = And(*clauses) if operator == "and" else Or(*clauses)

    assert joined_length(clauses, operator) == len(render(joined))  # type: ignore[arg-type]


def test_it_lets_a_packer_keep_a_running_or_length() -> None:
    clauses = [verified & presented, ~revoked, presented | verified]

    running = clauses[0].length + sum(len(" or ") + clause.length for clause in clauses[1:])

    assert running == joined_length(clauses, "or") == len(render(Or(*clauses)))


# --- validate ------------------------------------------------------------------------------------------------


def test_it_accepts_a_valid_expression() -> None:
    validate('http.host in {"api.example.com"}')


def test_it_rejects_expressions_longer_than_the_limit() -> None:
    too_long = HTTP_HOST.eq("x" * (MAX_EXPRESSION_LENGTH - len('http.host eq ""') + 1)).render()
    assert len(too_long) == MAX_EXPRESSION_LENGTH + 1

    with pytest.raises(ExpressionError, match="4097 characters"):
        validate(too_long)
    validate(too_long.replace("x", "", 1))


@pytest.mark.parametrize(
    "expression",
    [
        "http.host eq",
        "a and b",
        "ip.src in {192.0.2.1/24}",
        '(http.host eq "x"',
        'http.host eq "\\n"',
        "cf.tls_client_auth.cert_verified eq true",
    ],
)
def test_it_rejects_expressions_the_parser_rejects(expression: str) -> None:
    with pytest.raises(ExpressionError, match="Filter parsing error"):
        validate(expression)


@pytest.mark.parametrize(
    "expression",
    [
        "ip.src in {}",
        "http.host in { }",
        'http.host eq "a" or not ip.src in {\n}',
        'http.host eq "{}" and ip.src in {}',
    ],
)
def test_it_rejects_empty_inline_sets(expression: str) -> None:
    assert "error" not in octorules_wirefilter.parse_expression(expression)  # the parser allows them

    with pytest.raises(EmptySetError):
        validate(expression)


@pytest.mark.parametrize(
    "expression",
    [
        'http.host in {"{}"}',
        'http.host eq "\\"{}"',
        'http.host eq r"{}"',
        'http.host eq r#"a"{}"#',
        'http.host in {"a" "b"}',
    ],
)
def test_it_ignores_braces_inside_string_literals(expression: str) -> None:
    validate(expression)


# --- The rule shapes in DESIGN.md ----------------------------------------------------------------------------


def test_it_builds_the_base_rule() -> None:
    rule = And(HTTP_HOST.in_(StringSet(["api.example.com"])), Or(~CERT_VERIFIED.is_true(), CERT_REVOKED.is_true()))

    assert render(rule) == (
        '(http.host in {"api.example.com"} and '
        "(not cf.tls_client_auth.cert_verified or cf.tls_client_auth.cert_revoked))"
    )
    validate(render(rule))


def test_it_builds_the_deny_rule() -> None:
    other = "0" * 64
    rule = CERT_FINGERPRINT_SHA256.in_(StringSet([FINGERPRINT, other]))

    assert render(rule) == f'cf.tls_client_auth.cert_fingerprint_sha256 in {{"{other}" "{FINGERPRINT}"}}'
    validate(render(rule))


def test_it_builds_binding_clauses_and_packs_them_into_one_rule() -> None:
    clause = CERT_FINGERPRINT_SHA256.in_(StringSet([FINGERPRINT])) & ~IP_SRC.in_(
        IPSet(["192.0.2.0/24", "2001:db8::/32"])
    )
    rule = Or(clause, clause)

    assert render(clause) == (
        f'(cf.tls_client_auth.cert_fingerprint_sha256 in {{"{FINGERPRINT}"}} '
        "and not ip.src in {192.0.2.0/24 2001:db8::/32})"
    )
    assert render(rule) == f"{clause} or {clause}"
    validate(render(rule))
    assert rule.length == joined_length([clause, clause], "or") == len(render(rule))


def test_it_lowercases_a_string_field_for_case_insensitive_matching():
    from cloudflare.expressions import HTTP_HOST, IP_SRC, Lower

    comparison = Lower(HTTP_HOST).in_(StringSet(["api.example.com"]))

    assert render(comparison) == 'lower(http.host) in {"api.example.com"}'
    assert len(comparison) == len(render(comparison))
    validate(render(comparison))
    with pytest.raises(ExpressionError, match="uppercase"):
        Lower(HTTP_HOST).in_(StringSet(["API.example.com"]))
    with pytest.raises(ExpressionError, match="STRING"):
        Lower(IP_SRC)


@given(
    st.lists(
        st.one_of(
            st.tuples(st.integers(0, 2**12 - 1), st.integers(20, 32)).map(
                lambda t: ipaddress.IPv4Network((t[0] << 20, t[1]), strict=False)
            ),
            st.tuples(st.integers(0, 2**12 - 1), st.integers(110, 128)).map(
                lambda t: ipaddress.IPv6Network(((0x20010DB8 << 96) | (t[0] << 8), t[1]), strict=False)
            ),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_it_collapses_ip_sets_exactly_like_the_standard_library(networks):
    expected = [
        *ipaddress.collapse_addresses([n for n in networks if n.version == 4]),
        *ipaddress.collapse_addresses([n for n in networks if n.version == 6]),
    ]
    assert IPSet(networks).networks == tuple(expected)
