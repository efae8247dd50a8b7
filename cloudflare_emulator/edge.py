"""The zone's edge, as far as the portal's rules are concerned, and the certificates made outside the portal.

Emulator-only (served under /__emulator__, never under /client/v4):

* evaluation: a request (host, client IP, presented certificate) runs through the zone's custom rules in
  order, as Cloudflare's edge does (FACTS.md §14); the certificate is verified against the CAs the hostname
  trusts (trust.py). `python -m cloudflare_emulator edge` serves the same over HTTPS (edge_server.py);
* dashboard certificates: the zone's managed CA signs a key the "dashboard" made, and the certificate is
  listed by the API like any other (FACTS.md §2);
* foreign certificates: the same managed CA signs for "another account" (the CA may be shared, FACTS.md §5);
  nothing is stored, but the certificate verifies when presented.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from werkzeug.wrappers import Response

from . import client_certificates, codes, evaluator, pki, rulesets, trust
from .context import Context
from .envelope import ApiError, success

# Actions that end evaluation with the request stopped. A challenge stops an API client (it cannot solve
# one), so the emulator reports the challenges as "blocked" too; `rule.action` says which it was.
STOPPING_ACTIONS = frozenset({"block", "challenge", "js_challenge", "managed_challenge"})
MAX_NESTED_RULESETS = 1  # an entrypoint rule may execute a zone custom ruleset, which executes nothing
KEY_TYPES = ("rsa", "ecdsa")  # the dashboard's choices
DASHBOARD_VALIDITY_DAYS = 3650  # the dashboard's default, ten years
FOREIGN_VALIDITY_DAYS = 365
MAX_COMMON_NAME = 64


@dataclass(frozen=True)
class EdgeRequest:
    """A request reaching the zone: its Host header as sent, the client IP, the client certificate (PEM) if any."""

    host: str
    ip: str
    certificate: str | None = None


@dataclass(frozen=True)
class MatchedRule:
    id: str
    ref: str
    action: str


@dataclass(frozen=True)
class Verdict:
    outcome: str  # "blocked" or "allowed"
    rule: MatchedRule | None  # the rule that ended evaluation; None when no rule did

    @property
    def blocked(self) -> bool:
        return self.outcome == "blocked"

    def to_json(self) -> dict[str, Any]:
        rule = None if self.rule is None else {"id": self.rule.id, "ref": self.rule.ref, "action": self.rule.action}
        return {"outcome": self.outcome, "rule": rule}


ALLOWED = Verdict("allowed", None)


@dataclass(frozen=True)
class Evaluation:
    verdict: Verdict
    fields: dict[str, Any]  # evaluator.Request.fields(): field name -> value


def bad_request(message: str) -> ApiError:
    return ApiError(400, codes.EMULATOR_BAD_REQUEST, message)


# --- evaluation ----------------------------------------------------------------------------------------


def evaluate(context: Context, request: EdgeRequest) -> Verdict:
    """The custom rules of the zone's entrypoint, in order, for this request."""
    return inspect(context, request).verdict


def inspect(context: Context, request: EdgeRequest) -> Evaluation:
    """The verdict, and the fields the rules saw (the HTTPS edge passes some of them on to the origin)."""
    fields = request_fields(context, request)
    entrypoint = rulesets.entrypoint_of(context, rulesets.FIREWALL_CUSTOM_PHASE)
    verdict = run_rules(context, entrypoint["rules"] if entrypoint else [], fields, depth=0)
    return Evaluation(verdict or ALLOWED, fields)


def run_rules(context: Context, rules: list[dict[str, Any]], fields: dict[str, Any], depth: int) -> Verdict | None:
    """The verdict of the rule that ends evaluation of `rules`, or None when every rule let the request on."""
    for rule in rules:
        if not rule.get("enabled", True) or not rule_matches(rule, fields):
            continue
        action = rule["action"]
        parameters = rule.get("action_parameters") or {}
        if action in STOPPING_ACTIONS:
            return Verdict("blocked", matched(rule))
        if action == "skip" and parameters.get("ruleset") == "current":
            # "Skip all remaining custom rules" (FACTS.md §14): the request goes on, unblocked.
            return Verdict("allowed", matched(rule))
        if action == "execute" and depth < MAX_NESTED_RULESETS:
            inner = run_rules(context, executed_rules(context, rule, parameters), fields, depth + 1)
            if inner is not None and inner.blocked:
                return inner
            continue  # a skip inside the executed ruleset ends that ruleset only
        if action == "log" or (action == "skip" and parameters):
            # log never ends evaluation; skip of phases, products or other rulesets leaves this ruleset running.
            continue
        raise ApiError(
            400,
            codes.EMULATOR_CANNOT_EVALUATE,
            f"rule {rule['ref']}: the emulator does not evaluate action {action!r} with {parameters!r}",
        )
    return None


def rule_matches(rule: dict[str, Any], fields: dict[str, Any]) -> bool:
    try:
        return evaluator.evaluate(evaluator.parse(rule["expression"]), fields)
    except evaluator.EvaluatorError as exc:
        raise ApiError(
            400, codes.EMULATOR_CANNOT_EVALUATE, f"rule {rule['ref']}: the emulator cannot evaluate it: {exc}"
        ) from exc


def executed_rules(context: Context, rule: dict[str, Any], parameters: dict[str, Any]) -> list[dict[str, Any]]:
    target = rulesets.rulesets_of(context).get(str(parameters.get("id", "")))
    if target is None or target["kind"] != "custom" or target["phase"] != rulesets.FIREWALL_CUSTOM_PHASE:
        raise ApiError(
            400,
            codes.EMULATOR_CANNOT_EVALUATE,
            f"rule {rule['ref']}: execute needs the id of a custom ruleset of this zone in the custom phase",
        )
    rules: list[dict[str, Any]] = target["rules"]
    return rules


def matched(rule: dict[str, Any]) -> MatchedRule:
    return MatchedRule(id=rule["id"], ref=rule["ref"], action=rule["action"])


def request_fields(context: Context, request: EdgeRequest) -> dict[str, Any]:
    try:
        ip = ipaddress.ip_address(request.ip)
    except ValueError as exc:
        raise bad_request(f"ip must be an IPv4 or IPv6 address, got {request.ip!r}") from exc
    if request.certificate is None:
        return evaluator.Request(host=request.host, ip=ip, verified=False, presented=False).fields()
    try:
        certificate = pki.parse_certificate(request.certificate)
    except ValueError as exc:
        raise bad_request("certificate must be one PEM certificate, or null for none") from exc
    # The trusted CAs depend on the hostname (its associations), which the Host header names.
    seen = trust.inspect(context, trust.hostname_of(request.host), certificate)
    return evaluator.Request(
        host=request.host,
        ip=ip,
        presented=True,
        verified=seen.verified,
        revoked=seen.revoked,
        fingerprint=seen.fingerprint,
        serial=seen.serial,
        issuer_ski=seen.issuer_ski,
    ).fields()


def parse_edge_request(body: dict[str, Any]) -> EdgeRequest:
    host, ip, certificate = body.get("host"), body.get("ip"), body.get("certificate")
    if not isinstance(host, str) or not host:
        raise bad_request("host is required: the Host header as the client sends it")
    if not isinstance(ip, str):
        raise bad_request("ip is required: the client's IP address")
    if certificate is not None and not isinstance(certificate, str):
        raise bad_request("certificate must be a PEM string, or null for none")
    return EdgeRequest(host=host, ip=ip, certificate=certificate)


# --- certificates made outside the portal ---------------------------------------------------------------


def issue_dashboard_certificate(
    context: Context, *, common_name: str, validity_days: int, key_type: str
) -> dict[str, Any]:
    """The zone's certificate record as the API lists it, plus the private key the dashboard shows once."""
    check_certificate_options(common_name, validity_days, key_type)
    key_pem, csr = pki.new_key_and_csr(common_name, key_type)
    record = client_certificates.issue(context, csr, pki.csr_pem(csr), validity_days)
    return {**client_certificates.public_view(record), "private_key": key_pem}


def issue_foreign_certificate(
    context: Context, *, common_name: str, validity_days: int, key_type: str
) -> dict[str, Any]:
    """A certificate of the shared managed CA that no zone of this emulator lists."""
    check_certificate_options(common_name, validity_days, key_type)
    key_pem, csr = pki.new_key_and_csr(common_name, key_type)
    ca = context.managed_ca()
    certificate = pki.sign_csr(ca, csr, context.now, validity_days)
    return {
        "certificate": pki.pem(certificate),
        "private_key": key_pem,
        "fingerprint_sha256": pki.fingerprint_sha256(certificate),
        "serial_number": format(certificate.serial_number, "x"),
        "certificate_authority": {"id": ca.id, "name": ca.name},
        "expires_on": pki.rfc3339(certificate.not_valid_after_utc.timestamp()),
    }


def check_certificate_options(common_name: Any, validity_days: Any, key_type: Any) -> None:
    if not isinstance(common_name, str) or not 1 <= len(common_name) <= MAX_COMMON_NAME:
        raise bad_request(f"common_name must be a string of 1 to {MAX_COMMON_NAME} characters")
    if isinstance(validity_days, bool) or not isinstance(validity_days, int):
        raise bad_request("validity_days must be an integer")
    if not 1 <= validity_days <= client_certificates.MAX_VALIDITY_DAYS:
        raise bad_request(f"validity_days must be between 1 and {client_certificates.MAX_VALIDITY_DAYS}")
    if key_type not in KEY_TYPES:
        raise bad_request(f"key_type must be one of {', '.join(KEY_TYPES)}")


def certificate_options(context: Context, default_name: str, default_days: int) -> dict[str, Any]:
    body = context.json_body(required=False) or {}
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object")
    return {
        "common_name": body.get("common_name", default_name),
        "validity_days": body.get("validity_days", default_days),
        "key_type": body.get("key_type", "ecdsa"),
    }


# --- handlers of the emulator-only routes -----------------------------------------------------------------


def evaluate_route(context: Context) -> Response:
    context.zone()  # a malformed zone id answers 7003 before the body is read
    return success(evaluate(context, parse_edge_request(context.json_object())).to_json())


def dashboard_certificate_route(context: Context) -> Response:
    context.zone()
    options = certificate_options(context, "dashboard-certificate", DASHBOARD_VALIDITY_DAYS)
    return success(issue_dashboard_certificate(context, **options))


def foreign_certificate_route(context: Context) -> Response:
    options = certificate_options(context, "another-account", FOREIGN_VALIDITY_DAYS)
    return success(issue_foreign_certificate(context, **options))
