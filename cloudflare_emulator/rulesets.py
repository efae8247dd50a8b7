"""Zone rulesets (FACTS.md §8): the `http_request_firewall_custom` entry point and the single-rule
endpoints, plus the legacy Firewall Rules / Filters APIs, which now refuse every write.
"""

from __future__ import annotations

import datetime
import secrets
from typing import Any

from werkzeug.wrappers import Response

from . import codes
from .context import Context
from .envelope import ApiError, success
from .expressions import expression_error

PHASES = frozenset(
    [
        "ddos_l4",
        "ddos_l7",
        "http_config_settings",
        "http_custom_errors",
        "http_log_custom_fields",
        "http_ratelimit",
        "http_request_cache_settings",
        "http_request_dynamic_redirect",
        "http_request_firewall_custom",
        "http_request_firewall_managed",
        "http_request_late_transform",
        "http_request_origin",
        "http_request_redirect",
        "http_request_sanitize",
        "http_request_sbfm",
        "http_request_select_configuration",
        "http_request_transform",
        "http_response_compression",
        "http_response_firewall_managed",
        "http_response_headers_transform",
        "magic_transit",
        "magic_transit_ids_managed",
        "magic_transit_managed",
    ]
)
# The discriminator values of the schema's rulesets_RequestRule.
ACTIONS = frozenset(
    [
        "block",
        "challenge",
        "compress_response",
        "ddos_dynamic",
        "execute",
        "force_connection_close",
        "js_challenge",
        "log",
        "log_custom_field",
        "managed_challenge",
        "redirect",
        "rewrite",
        "route",
        "score",
        "serve_error",
        "set_cache_settings",
        "set_config",
        "skip",
    ]
)
FIREWALL_CUSTOM_PHASE = "http_request_firewall_custom"
CREATABLE_KINDS = ("zone", "custom")  # "managed" belongs to Cloudflare, "root" to accounts
RULE_FIELDS = ("action", "expression", "description", "enabled", "ref", "action_parameters", "logging")
LEGACY_MAINTENANCE_MESSAGE = (
    "firewallrules.api.maintenance_mode. This API is in maintenance mode and no longer accepts "
    "modifications. Please use the Rulesets API (WAF custom rules) instead."
)


def timestamp(now: float) -> str:
    return datetime.datetime.fromtimestamp(now, tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_id() -> str:
    return secrets.token_hex(16)


def bad_request(message: str, pointer: str | None = None, code: int = codes.RULESET_BAD_REQUEST) -> ApiError:
    return ApiError(400, code, message, pointer)


# --- rule validation -----------------------------------------------------------------------------------


def build_rule(raw: Any, pointer: str, now: float, existing: dict[str, Any] | None = None) -> dict[str, Any]:
    """A stored rule from a request's rule object; `existing` keeps the id (and ref unless one is sent)."""
    if not isinstance(raw, dict):
        raise bad_request("a rule must be an object", pointer or "/")
    action = raw.get("action")
    if not isinstance(action, str) or action not in ACTIONS:
        raise bad_request(f"action must be one of {', '.join(sorted(ACTIONS))}", f"{pointer}/action")
    expression = raw.get("expression")
    if not isinstance(expression, str):
        raise bad_request("expression is required and must be a string", f"{pointer}/expression")
    problem = expression_error(expression)
    if problem is not None:
        raise bad_request(problem, f"{pointer}/expression", codes.RULESET_INVALID_EXPRESSION)
    for name, kind in (("description", str), ("enabled", bool), ("ref", str), ("action_parameters", dict)):
        if name in raw and not isinstance(raw[name], kind):
            raise bad_request(f"{name} must be a {kind.__name__}", f"{pointer}/{name}")
    if "ref" in raw and not raw["ref"]:
        raise bad_request("ref must not be empty", f"{pointer}/ref")
    if "logging" in raw and not (isinstance(raw["logging"], dict) and isinstance(raw["logging"].get("enabled"), bool)):
        raise bad_request("logging must be an object with a boolean enabled", f"{pointer}/logging")

    rule_id = existing["id"] if existing else new_id()
    rule: dict[str, Any] = {
        "id": rule_id,
        "action": action,
        "expression": expression,
        "description": raw.get("description", ""),
        "enabled": raw.get("enabled", True),
        # FACTS.md §8: ref defaults to the rule id.
        "ref": raw.get("ref") or (existing["ref"] if existing else rule_id),
    }
    for optional in ("action_parameters", "logging"):
        if optional in raw:
            rule[optional] = raw[optional]
    return stamp_rule(rule, now, existing)


def stamp_rule(rule: dict[str, Any], now: float, existing: dict[str, Any] | None) -> dict[str, Any]:
    """Version and last_updated: unchanged for an identical definition, bumped otherwise."""
    if existing is not None and all(existing.get(f) == rule.get(f) for f in RULE_FIELDS):
        return {**rule, "version": existing["version"], "last_updated": existing["last_updated"]}
    version = str(int(existing["version"]) + 1) if existing else "1"
    return {**rule, "version": version, "last_updated": timestamp(now)}


def ensure_unique_refs(rules: list[dict[str, Any]], pointer_for: Any) -> None:
    seen: set[str] = set()
    for index, rule in enumerate(rules):
        if rule["ref"] in seen:
            raise bad_request(
                f"ref {rule['ref']!r} is used by more than one rule; refs must be unique within a ruleset",
                pointer_for(index),
                codes.RULESET_DUPLICATE_REF,
            )
        seen.add(rule["ref"])


def build_rule_list(raw_rules: Any, old_rules: list[dict[str, Any]], now: float) -> list[dict[str, Any]]:
    """A full rule list (create / PUT): rules are matched to old ones by id, then by ref, keeping ids."""
    if not isinstance(raw_rules, list):
        raise bad_request("rules must be an array", "/rules")
    by_id = {rule["id"]: rule for rule in old_rules}
    by_ref = {rule["ref"]: rule for rule in old_rules}
    rules = []
    for index, raw in enumerate(raw_rules):
        existing = None
        if isinstance(raw, dict):
            existing = by_id.get(raw.get("id", "")) or by_ref.get(raw.get("ref", ""))
        rules.append(build_rule(raw, f"/rules/{index}", now, existing))
    ensure_unique_refs(rules, lambda index: f"/rules/{index}/ref")
    return rules


# --- ruleset storage -----------------------------------------------------------------------------------


def rulesets_of(context: Context) -> dict[str, dict[str, Any]]:
    rulesets: dict[str, dict[str, Any]] = context.zone()["rulesets"]
    return rulesets


def entrypoint_of(context: Context, phase: str) -> dict[str, Any] | None:
    for ruleset in rulesets_of(context).values():
        if ruleset["kind"] == "zone" and ruleset["phase"] == phase:
            return ruleset
    return None


def find_ruleset(context: Context) -> dict[str, Any]:
    ruleset = rulesets_of(context).get(context.args["ruleset_id"])
    if ruleset is None:
        raise ApiError(404, codes.RULESET_NOT_FOUND, "could not find the requested ruleset")
    return ruleset


def rule_index(ruleset: dict[str, Any], rule_id: str) -> int:
    for index, rule in enumerate(ruleset["rules"]):
        if rule["id"] == rule_id:
            return index
    raise ApiError(404, codes.RULE_NOT_FOUND, f"could not find rule {rule_id} in the ruleset")


def bump(context: Context, ruleset: dict[str, Any]) -> Response:
    """Every write creates a new ruleset version and answers with the whole ruleset (FACTS.md §8)."""
    ruleset["version"] = str(int(ruleset["version"]) + 1)
    ruleset["last_updated"] = timestamp(context.now)
    context.changed()
    return success(ruleset)


def custom_rule_count(context: Context, *, leaving_out: dict[str, Any] | None = None) -> int:
    """Rules the plan counts: every rule in the custom phase, entrypoint and zone custom rulesets (FACTS.md §7)."""
    return sum(
        len(ruleset["rules"])
        for ruleset in rulesets_of(context).values()
        if ruleset["phase"] == FIREWALL_CUSTOM_PHASE and ruleset is not leaving_out
    )


def ensure_rule_limit(context: Context, ruleset: dict[str, Any] | None, phase: str, new_rules: list[Any]) -> None:
    """Refuse a write that adds rules beyond the plan's limit (FACTS.md §14: checked at each write).

    A write that does not add rules passes even over the limit (the limit may have been lowered), so a zone
    over its limit can still be brought down.
    """
    if phase != FIREWALL_CUSTOM_PHASE:
        return
    before = custom_rule_count(context)
    after = custom_rule_count(context, leaving_out=ruleset) + len(new_rules)
    limit = context.settings.custom_rules_limit
    if after > limit and after > before:
        raise bad_request(
            f"exceeded maximum number of rules in the phase {phase}: {after} out of {limit}",
            "/rules",
            codes.CUSTOM_RULES_LIMIT,
        )


def phase_argument(context: Context) -> str:
    phase = context.args["phase"]
    if phase not in PHASES:
        raise bad_request(f"unknown phase {phase!r}", "/phase")
    return phase


# --- handlers ------------------------------------------------------------------------------------------


def list_all(context: Context) -> Response:
    summaries = [{k: v for k, v in rs.items() if k != "rules"} for rs in rulesets_of(context).values()]
    return success(summaries)


def get_one(context: Context) -> Response:
    return success(find_ruleset(context))


def get_entrypoint(context: Context) -> Response:
    phase = phase_argument(context)
    ruleset = entrypoint_of(context, phase)
    if ruleset is None:
        # FACTS.md §8: 404 until the entry point is created.
        raise ApiError(404, codes.RULESET_NOT_FOUND, f"could not find entrypoint ruleset in the '{phase}' phase")
    return success(ruleset)


def text_field(body: dict[str, Any], name: str, default: str | None = None) -> str:
    value = body.get(name, default)
    if not isinstance(value, str) or (name == "name" and not value):
        raise bad_request(f"{name} is required and must be a non-empty string", f"/{name}")
    return value


def create(context: Context) -> Response:
    body = context.json_object()
    name = text_field(body, "name")
    description = text_field(body, "description", "")
    kind = body.get("kind")
    if kind not in CREATABLE_KINDS:
        raise bad_request(f"kind must be one of {', '.join(CREATABLE_KINDS)} for a zone ruleset", "/kind")
    phase = body.get("phase")
    if not isinstance(phase, str) or phase not in PHASES:
        raise bad_request("phase is required and must be a known phase", "/phase")
    if kind == "zone" and entrypoint_of(context, phase) is not None:
        raise bad_request(
            f"an entrypoint ruleset already exists for the '{phase}' phase; update it instead",
            "/phase",
            codes.RULESET_ENTRYPOINT_EXISTS,
        )
    ruleset = new_ruleset(context, name, description, str(kind), phase)
    ruleset["rules"] = build_rule_list(body.get("rules"), [], context.now)
    ensure_rule_limit(context, None, phase, ruleset["rules"])
    rulesets_of(context)[ruleset["id"]] = ruleset
    context.changed()
    return success(ruleset)


def new_ruleset(context: Context, name: str, description: str, kind: str, phase: str) -> dict[str, Any]:
    return {
        "id": new_id(),
        "name": name,
        "description": description,
        "kind": kind,
        "phase": phase,
        "version": "1",
        "last_updated": timestamp(context.now),
        "rules": [],
    }


def put_entrypoint(context: Context) -> Response:
    phase = phase_argument(context)
    body = context.json_object()
    existing = entrypoint_of(context, phase)
    name = text_field(body, "name", existing["name"] if existing else "default")
    description = text_field(body, "description", existing["description"] if existing else "")
    # FACTS.md §8: the PUT replaces the complete rule list; refs keep their rule ids.
    rules = build_rule_list(body.get("rules"), existing["rules"] if existing else [], context.now)
    ensure_rule_limit(context, existing, phase, rules)
    ruleset = existing
    if ruleset is None:
        # Updating a missing entry point creates it (version 1 after the bump below), as Cloudflare does.
        ruleset = new_ruleset(context, name, description, "zone", phase)
        ruleset["version"] = "0"
        rulesets_of(context)[ruleset["id"]] = ruleset
    ruleset.update(name=name, description=description, rules=rules)
    return bump(context, ruleset)


def place(rules: list[dict[str, Any]], rule: dict[str, Any], position: Any) -> None:
    """Insert `rule` per `position` ({before|after|index}); no position appends (FACTS.md §8)."""
    if position is None:
        rules.append(rule)
        return
    if not isinstance(position, dict) or len(position) != 1:
        raise bad_request("position must be an object with exactly one of before, after, index", "/position")
    ((key, value),) = position.items()
    if key in ("before", "after"):
        if not isinstance(value, str):
            raise bad_request(f"position.{key} must be a rule id string", f"/position/{key}")
        if value == "":
            rules.insert(0 if key == "before" else len(rules), rule)
            return
        ids = [existing["id"] for existing in rules]
        if value not in ids:
            raise bad_request(f"position.{key} refers to unknown rule {value}", f"/position/{key}")
        rules.insert(ids.index(value) + (1 if key == "after" else 0), rule)
    elif key == "index":
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 1 or int(value) != value:
            raise bad_request("position.index must be an integer of at least 1", "/position/index")
        rules.insert(min(int(value) - 1, len(rules)), rule)
    else:
        raise bad_request("position must be an object with exactly one of before, after, index", "/position")


def add_rule(context: Context) -> Response:
    ruleset = find_ruleset(context)
    body = context.json_object()
    rule = build_rule({k: v for k, v in body.items() if k != "position"}, "", context.now)
    rules = list(ruleset["rules"])
    place(rules, rule, body.get("position"))
    ensure_unique_refs(rules, lambda _index: "/ref")
    ensure_rule_limit(context, ruleset, ruleset["phase"], rules)
    ruleset["rules"] = rules
    return bump(context, ruleset)


def update_rule(context: Context) -> Response:
    ruleset = find_ruleset(context)
    body = context.json_object()
    index = rule_index(ruleset, context.args["rule_id"])
    rules = list(ruleset["rules"])
    existing = rules.pop(index)
    definition = {k: v for k, v in body.items() if k != "position"}
    # A body with only `position` moves the rule; otherwise it is the rule's full new definition.
    rule = build_rule(definition, "", context.now, existing) if definition else existing
    if "position" in body:
        place(rules, rule, body["position"])
    else:
        rules.insert(index, rule)
    ensure_unique_refs(rules, lambda _index: "/ref")
    ruleset["rules"] = rules
    return bump(context, ruleset)


def delete_rule(context: Context) -> Response:
    ruleset = find_ruleset(context)
    index = rule_index(ruleset, context.args["rule_id"])
    ruleset["rules"] = [rule for position, rule in enumerate(ruleset["rules"]) if position != index]
    return bump(context, ruleset)


# --- legacy Firewall Rules / Filters (FACTS.md §8) -----------------------------------------------------


def legacy_write(context: Context) -> Response:
    context.zone()  # an invalid zone id still answers 7003 first
    raise ApiError(400, codes.LEGACY_FIREWALL_MAINTENANCE, LEGACY_MAINTENANCE_MESSAGE)


def legacy_list(context: Context) -> Response:
    context.zone()
    return success([], {"page": 1, "per_page": 25, "count": 0, "total_count": 0, "total_pages": 0})


def legacy_get_one(context: Context) -> Response:
    context.zone()
    raise ApiError(404, codes.RULESET_NOT_FOUND, "firewallrules.api.not_found")
