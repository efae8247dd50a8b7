from __future__ import annotations

from typing import Any

import pytest

from .conftest import (
    SCHEMA_DEFECT_LEGACY_ZONE_ID,
    SCHEMA_DEFECT_MOVE_ONLY,
    ZONE,
    Api,
    error_code,
)

RULESETS = f"/zones/{ZONE}/rulesets"
ENTRYPOINT = f"{RULESETS}/phases/http_request_firewall_custom/entrypoint"
BASE_RULE = {"action": "block", "expression": 'http.host eq "api.example.com"', "ref": "portal_base"}


def create_entrypoint(api: Api, rules: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    body = {"name": "default", "kind": "zone", "phase": "http_request_firewall_custom", "rules": rules or []}
    response = api.post(RULESETS, body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()["result"]
    return result


def add_rule(api: Api, ruleset_id: str, **rule: Any) -> Any:
    return api.post(f"{RULESETS}/{ruleset_id}/rules", {"action": "block", **rule})


def refs(ruleset: dict[str, Any]) -> list[str]:
    return [rule["ref"] for rule in ruleset["rules"]]


def test_entrypoint_404_until_created(api: Api) -> None:
    missing = api.get(ENTRYPOINT)
    assert missing.status_code == 404
    assert error_code(missing) == 10003
    created = create_entrypoint(api, [BASE_RULE])
    assert created["version"] == "1"
    assert created["rules"][0]["ref"] == "portal_base"
    assert api.get(ENTRYPOINT).json()["result"] == created
    listed = api.get(RULESETS).json()["result"]
    assert listed == [{k: v for k, v in created.items() if k != "rules"}]


def test_second_entrypoint_for_a_phase_is_refused(api: Api) -> None:
    create_entrypoint(api)
    body = {"name": "again", "kind": "zone", "phase": "http_request_firewall_custom", "rules": []}
    response = api.post(RULESETS, body)
    assert response.status_code == 400
    assert error_code(response) == 10004


def test_rules_get_ids_refs_and_versions(api: Api, clock: Any) -> None:
    ruleset = create_entrypoint(api)
    clock.advance(5)
    after = add_rule(api, ruleset["id"], expression="ip.src eq 192.0.2.1").json()["result"]
    rule = after["rules"][0]
    assert rule["ref"] == rule["id"]  # FACTS §8: ref defaults to the id
    assert len(rule["id"]) == 32
    assert rule["enabled"] is True
    assert rule["version"] == "1"
    assert after["version"] == "2"
    assert after["last_updated"] > ruleset["last_updated"]


def test_ref_must_be_unique(api: Api) -> None:
    ruleset = create_entrypoint(api, [BASE_RULE])
    response = add_rule(api, ruleset["id"], expression="ip.src eq 192.0.2.1", ref="portal_base")
    assert response.status_code == 400
    assert error_code(response) == 10006
    assert api.get(ENTRYPOINT).json()["result"]["version"] == "1"  # nothing was written


def test_positions(api: Api) -> None:
    ruleset = create_entrypoint(api, [{**BASE_RULE, "ref": "b"}])
    rid = ruleset["id"]
    expression = "ip.src eq 192.0.2.1"
    result = add_rule(api, rid, expression=expression, ref="top", position={"before": ""}).json()["result"]
    assert refs(result) == ["top", "b"]
    result = add_rule(api, rid, expression=expression, ref="end").json()["result"]
    assert refs(result) == ["top", "b", "end"]
    b_id = result["rules"][1]["id"]
    result = add_rule(api, rid, expression=expression, ref="after_b", position={"after": b_id}).json()["result"]
    assert refs(result) == ["top", "b", "after_b", "end"]
    result = add_rule(api, rid, expression=expression, ref="before_b", position={"before": b_id}).json()["result"]
    assert refs(result) == ["top", "before_b", "b", "after_b", "end"]
    result = add_rule(api, rid, expression=expression, ref="second", position={"index": 2}).json()["result"]
    assert refs(result) == ["top", "second", "before_b", "b", "after_b", "end"]
    assert result["version"] == "6"

    moved = api.patch(
        f"{RULESETS}/{rid}/rules/{b_id}", {"position": {"index": 1}}, invalid_request=SCHEMA_DEFECT_MOVE_ONLY
    )
    assert refs(moved.json()["result"]) == ["b", "top", "second", "before_b", "after_b", "end"]
    unknown = add_rule(api, rid, expression=expression, ref="x", position={"before": "0" * 32})
    assert unknown.status_code == 400
    assert unknown.json()["errors"][0]["source"] == {"pointer": "/position/before"}


def test_patch_replaces_the_definition_and_delete_removes(api: Api) -> None:
    ruleset = create_entrypoint(api, [BASE_RULE, {**BASE_RULE, "ref": "other"}])
    rule = ruleset["rules"][0]
    url = f"{RULESETS}/{ruleset['id']}/rules/{rule['id']}"
    patched = api.patch(url, {"action": "block", "expression": "ip.src eq 192.0.2.9", "enabled": False}).json()[
        "result"
    ]
    new_rule = patched["rules"][0]
    assert new_rule["id"] == rule["id"]
    assert new_rule["ref"] == "portal_base"  # kept when the body does not send one
    assert new_rule["expression"] == "ip.src eq 192.0.2.9"
    assert new_rule["enabled"] is False
    assert new_rule["version"] == "2"
    assert patched["rules"][1] == ruleset["rules"][1]  # other rules untouched

    deleted = api.delete(url).json()["result"]
    assert refs(deleted) == ["other"]
    assert deleted["version"] == "3"
    assert api.delete(url).status_code == 404


def test_put_entrypoint_replaces_all_and_keeps_ids_by_ref(api: Api) -> None:
    ruleset = create_entrypoint(api, [BASE_RULE, {**BASE_RULE, "ref": "gone"}])
    base_id = ruleset["rules"][0]["id"]
    body = {"rules": [{**BASE_RULE, "expression": "ip.src eq 192.0.2.7"}, {**BASE_RULE, "ref": "new"}]}
    result = api.put(ENTRYPOINT, body).json()["result"]
    assert refs(result) == ["portal_base", "new"]
    assert result["rules"][0]["id"] == base_id
    assert result["rules"][0]["version"] == "2"
    assert result["version"] == "2"


def test_put_entrypoint_creates_a_missing_one(api: Api) -> None:
    result = api.put(ENTRYPOINT, {"rules": [BASE_RULE]}).json()["result"]
    assert result["version"] == "1"
    assert api.get(ENTRYPOINT).json()["result"]["id"] == result["id"]


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("ip.src in {}", "inline set"),
        ("ip.src in { }", "inline set"),
        ("ip.src in {192.0.2.1", "parsing error"),
        ('http.hots eq "x"', "parsing error"),
    ],
)
def test_invalid_expressions_point_at_the_rule(api: Api, expression: str, fragment: str) -> None:
    body = {
        "name": "d",
        "kind": "zone",
        "phase": "http_request_firewall_custom",
        "rules": [BASE_RULE, {**BASE_RULE, "ref": "x", "expression": expression}],
    }
    response = api.post(RULESETS, body)
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["code"] == 10005
    assert error["source"] == {"pointer": "/rules/1/expression"}
    assert fragment in error["message"].lower()


def test_braces_inside_strings_are_not_empty_sets(api: Api) -> None:
    ruleset = create_entrypoint(api)
    response = add_rule(api, ruleset["id"], expression='http.request.uri.path eq "/{}" or http.host eq r#"{}"#')
    assert response.status_code == 200, response.text


def fingerprint_rule(count: int) -> str:
    fingerprints = " ".join(f'"{index:064x}"' for index in range(count))
    return f"cf.tls_client_auth.cert_fingerprint_sha256 in {{{fingerprints}}}"


def test_expression_length_limit(api: Api) -> None:
    ruleset = create_entrypoint(api)
    expression = fingerprint_rule(70)
    assert len(expression) > 4096
    response = add_rule(api, ruleset["id"], expression=expression)
    assert response.status_code == 400
    assert response.json()["errors"][0]["source"] == {"pointer": "/expression"}
    assert "4096" in response.json()["errors"][0]["message"]
    fits = fingerprint_rule(58)
    assert len(fits) <= 4096
    assert add_rule(api, ruleset["id"], expression=fits).status_code == 200


def test_unknown_action_is_refused(api: Api) -> None:
    ruleset = create_entrypoint(api)
    response = api.post(
        f"{RULESETS}/{ruleset['id']}/rules",
        {"action": "explode", "expression": "ip.src eq 192.0.2.1"},
        invalid_request="unknown action on purpose",
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["source"] == {"pointer": "/action"}


def test_unknown_ruleset_is_404(api: Api) -> None:
    response = add_rule(api, "0" * 32, expression="ip.src eq 192.0.2.1")
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/firewall/rules", [{"filter": {"expression": "ip.src eq 192.0.2.1"}, "action": "block"}]),
        ("PUT", "/firewall/rules", []),
        ("PATCH", "/firewall/rules", []),
        ("DELETE", "/firewall/rules/372e67954025e0ba6aaa6d586b9e0b60", None),
        ("POST", "/filters", [{"expression": "ip.src eq 192.0.2.1"}]),
        ("PUT", "/filters/372e67954025e0ba6aaa6d586b9e0b61", {"expression": "ip.src eq 192.0.2.1"}),
    ],
)
def test_legacy_firewall_writes_are_in_maintenance_mode(api: Api, method: str, path: str, body: Any) -> None:
    response = api.call(method, f"/zones/{ZONE}{path}", body, invalid_request=SCHEMA_DEFECT_LEGACY_ZONE_ID)
    assert response.status_code == 400
    assert error_code(response) == 10020
    assert response.json()["errors"][0]["message"].startswith("firewallrules.api.maintenance_mode.")


def test_legacy_firewall_reads_are_empty(api: Api) -> None:
    for path in ("/firewall/rules", "/filters"):
        response = api.get(f"/zones/{ZONE}{path}", invalid_request=SCHEMA_DEFECT_LEGACY_ZONE_ID)
        assert response.status_code == 200
        assert response.json()["result"] == []
