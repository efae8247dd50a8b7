"""The Rules-language evaluator (the emulator's and the compiler tests'), on hand-written expressions."""

from __future__ import annotations

import ipaddress

import pytest

from cloudflare_emulator.evaluator import EvaluatorError, Request, matches

FP = "ab" * 32
FINGERPRINT = "cf.tls_client_auth.cert_fingerprint_sha256"
REQUEST = Request(host="api.example.com", ip=ipaddress.ip_address("192.0.2.7"), fingerprint=FP)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ('http.host in {"api.example.com" "x"}', True),
        ('http.host in {"other.example.com"}', False),
        ("ip.src in {192.0.2.0/24}", True),
        ("ip.src in {192.0.2.8 2001:db8::/32}", False),
        ("not ip.src in {192.0.2.0/24}", False),
        ("not ip.src in {2001:db8::/32}", True),
        ("cf.tls_client_auth.cert_verified", True),
        ("not cf.tls_client_auth.cert_verified or cf.tls_client_auth.cert_revoked", False),
        # "and" binds tighter than "or"; "not" tighter than both.
        ("cf.tls_client_auth.cert_revoked and cf.tls_client_auth.cert_verified or ip.src in {192.0.2.7}", True),
        ("cf.tls_client_auth.cert_revoked and (cf.tls_client_auth.cert_verified or ip.src in {192.0.2.7})", False),
        (
            f'(http.host in {{"api.example.com"}} and (cf.tls_client_auth.cert_fingerprint_sha256 in {{"{FP}"}}'
            " and not ip.src in {198.51.100.0/24}))",
            True,
        ),
        ('http.host in {"a\\"b"}', False),
        # Comparisons: the allow ranges partition fingerprints with ge/lt on lowercase hex.
        ('http.host eq "api.example.com"', True),
        ('http.host ne "api.example.com"', False),
        ('lower(http.host) == "api.example.com"', True),
        (f'cf.tls_client_auth.cert_fingerprint_sha256 ge "{FP}"', True),
        (f'cf.tls_client_auth.cert_fingerprint_sha256 lt "{FP}"', False),
        (
            'cf.tls_client_auth.cert_fingerprint_sha256 gt "aa" and cf.tls_client_auth.cert_fingerprint_sha256 le "ac"',
            True,
        ),
        ('cf.tls_client_auth.cert_fingerprint_sha256 < "ab"', False),
        ("ip.src eq 192.0.2.7 && !cf.tls_client_auth.cert_revoked", True),
        ("ip.src != 192.0.2.7 || cf.tls_client_auth.cert_revoked", False),
        ("cf.tls_client_auth.cert_presented", True),
    ],
)
def test_it_evaluates_the_subset_the_compiler_emits(expression: str, expected: bool) -> None:
    assert matches(expression, REQUEST) is expected


@pytest.mark.parametrize(
    "expression",
    [
        'http.host contains "x"',
        'http.request.uri.path eq "/"',
        "ip.src lt 192.0.2.7",
        "ip.src eq 192.0.2.0/24",
        "ip.src in {192.0.2.1..192.0.2.9}",
        "http.host eq api",
        "ip.src in {}",
        "(cf.tls_client_auth.cert_verified",
        "true",
    ],
)
def test_it_refuses_what_it_does_not_understand(expression: str) -> None:
    with pytest.raises(EvaluatorError):
        matches(expression, REQUEST)
