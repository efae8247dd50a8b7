"""The plan's custom-rule limit, checked at each write that adds rules (FACTS.md §7, §14)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cloudflare_emulator import Emulator

from .conftest import ZONE, Api, FakeClock, error_code, make_api

RULESETS = f"/zones/{ZONE}/rulesets"
ENTRYPOINT = f"{RULESETS}/phases/http_request_firewall_custom/entrypoint"
LIMIT_CODE = 20217  # the emulator's assumption; Cloudflare does not document it


def rule(ref: str, ip: str = "192.0.2.1") -> dict[str, Any]:
    return {"ref": ref, "action": "block", "expression": f"ip.src eq {ip}"}


def rules(count: int, prefix: str = "r") -> list[dict[str, Any]]:
    return [rule(f"{prefix}{n}") for n in range(count)]


@pytest.fixture
def limited(clock: FakeClock) -> Api:
    return make_api(Emulator(clock=clock, custom_rules_limit=3))


def assert_refused(response: Any, count: int) -> None:
    assert response.status_code == 400
    assert error_code(response) == LIMIT_CODE
    assert f"{count} out of 3" in response.json()["errors"][0]["message"]


def test_a_rule_beyond_the_limit_is_refused_and_nothing_is_written(limited: Api) -> None:
    ruleset = limited.put(ENTRYPOINT, {"rules": rules(3)}).json()["result"]

    refused = limited.post(f"{RULESETS}/{ruleset['id']}/rules", rule("fourth", "192.0.2.4"))

    assert_refused(refused, 4)
    assert limited.get(ENTRYPOINT).json()["result"] == ruleset


def test_a_put_over_the_limit_is_refused_and_one_at_it_passes(limited: Api) -> None:
    before = limited.put(ENTRYPOINT, {"rules": rules(2)}).json()["result"]

    assert_refused(limited.put(ENTRYPOINT, {"rules": rules(4)}), 4)
    assert limited.get(ENTRYPOINT).json()["result"] == before
    assert limited.put(ENTRYPOINT, {"rules": rules(3, "new")}).status_code == 200


def test_creating_a_ruleset_over_the_limit_is_refused(limited: Api) -> None:
    body = {"name": "default", "kind": "zone", "phase": "http_request_firewall_custom", "rules": rules(4)}

    assert_refused(limited.post(RULESETS, body), 4)
    assert limited.get(RULESETS).json()["result"] == []


def test_rules_in_zone_custom_rulesets_count(limited: Api) -> None:
    entrypoint = limited.put(ENTRYPOINT, {"rules": rules(2)}).json()["result"]
    custom = {"name": "team", "kind": "custom", "phase": "http_request_firewall_custom", "rules": rules(1, "team")}
    assert limited.post(RULESETS, custom).status_code == 200

    assert_refused(limited.post(f"{RULESETS}/{entrypoint['id']}/rules", rule("third")), 4)
    assert_refused(limited.post(RULESETS, {**custom, "name": "another"}), 4)


def test_other_phases_do_not_count(limited: Api) -> None:
    limited.put(ENTRYPOINT, {"rules": rules(3)})
    other = f"{RULESETS}/phases/http_request_firewall_managed/entrypoint"
    execute = {
        "ref": "managed",
        "action": "execute",
        "action_parameters": {"id": "efb7b8c949ac4650a09736fc376e9aee"},
        "expression": "ip.src eq 192.0.2.1",
    }

    assert limited.put(other, {"rules": [execute]}).status_code == 200


def test_a_zone_over_a_lowered_limit_can_still_shrink(tmp_path: Path, clock: FakeClock) -> None:
    state = tmp_path / "state.json"
    make_api(Emulator(clock=clock, state_path=state, custom_rules_limit=10)).put(ENTRYPOINT, {"rules": rules(5)})
    lowered = make_api(Emulator(clock=clock, state_path=state, custom_rules_limit=3))
    ruleset = lowered.get(ENTRYPOINT).json()["result"]

    assert lowered.delete(f"{RULESETS}/{ruleset['id']}/rules/{ruleset['rules'][0]['id']}").status_code == 200
    assert lowered.put(ENTRYPOINT, {"rules": rules(4)}).status_code == 200
    assert_refused(lowered.post(f"{RULESETS}/{ruleset['id']}/rules", rule("more")), 5)


def test_the_default_is_enterprise_sized(emulator: Emulator, api: Api) -> None:
    assert emulator.settings.custom_rules_limit == 1000
    assert api.put(ENTRYPOINT, {"rules": rules(1000)}).status_code == 200
    assert error_code(api.put(ENTRYPOINT, {"rules": rules(1001)})) == LIMIT_CODE


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="custom_rules_limit"):
        Emulator(custom_rules_limit=0)
