"""The command line: `python -m cloudflare_emulator` serving real HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.contract import ContractValidator
from tests.support.emulator_process import running_emulator

from .conftest import ZONE, Api, error_code, issue, make_csr


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    state = str(tmp_path / "state.json")
    with running_emulator("--token", "cli-token", "--state", state, "--revocation-delay", "0") as url:
        yield url


@pytest.mark.slow
def test_real_http_round_trip(server: str) -> None:
    assert server.startswith("http://127.0.0.1:")
    assert server.endswith("/client/v4")
    session = requests.Session()
    session.headers["Authorization"] = "Bearer cli-token"
    api = Api(session, ContractValidator(), base=server)

    created = issue(api, make_csr("over-http"))
    revoked = api.delete(f"/zones/{ZONE}/client_certificates/{created['id']}").json()["result"]
    assert revoked["status"] == "pending_revocation"
    time.sleep(0.01)  # the server runs on the real clock, with --revocation-delay 0
    assert api.get(f"/zones/{ZONE}/client_certificates/{created['id']}").json()["result"]["status"] == "revoked"
    wrong = api.get(f"/zones/{ZONE}/client_certificates", headers={"Authorization": "Bearer wrong"})
    assert error_code(wrong) == 9109

    # Over real HTTP the "commit, then lose the answer" fault answers late, so the read timeout fires.
    root = server.removesuffix("/client/v4")
    fault = {"kind": "create_commits_then_fails", "mode": "timeout", "sleep": 1.5}
    assert session.post(f"{root}/__emulator__/faults", json=fault).status_code == 200
    with pytest.raises(requests.exceptions.ReadTimeout):
        session.post(
            f"{server}/zones/{ZONE}/client_certificates",
            json={"csr": make_csr("late"), "validity_days": 1},
            timeout=0.5,
        )
    log = session.get(f"{root}/__emulator__/log").json()["result"]
    assert [entry["method"] for entry in log] == ["POST", "DELETE", "GET", "GET", "POST"]
    assert [entry["status"] for entry in log] == [200, 200, 200, 403, 200]


@pytest.mark.slow
def test_the_edge_and_the_rule_limit_over_real_http() -> None:
    with running_emulator("--token", "cli-token", "--custom-rules-limit", "2") as server:
        session = requests.Session()
        session.headers["Authorization"] = "Bearer cli-token"
        api = Api(session, ContractValidator(), base=server)
        root = server.removesuffix("/client/v4")
        entrypoint = f"/zones/{ZONE}/rulesets/phases/http_request_firewall_custom/entrypoint"
        base = {
            "ref": "base",
            "action": "block",
            "expression": 'http.host eq "api.example.com" and not cf.tls_client_auth.cert_verified',
        }
        skip = {
            "ref": "skip",
            "action": "skip",
            "action_parameters": {"ruleset": "current"},
            "expression": "ip.src eq 198.51.100.7",
        }
        assert api.put(entrypoint, {"rules": [base, skip]}).status_code == 200
        refused = api.put(entrypoint, {"rules": [skip, base, {**base, "ref": "third"}]})
        assert refused.status_code == 400
        assert error_code(refused) == 20217

        dashboard = session.post(f"{root}/__emulator__/zones/{ZONE}/dashboard_certificates", json={}).json()["result"]
        foreign = session.post(f"{root}/__emulator__/foreign_certificates", json={}).json()["result"]
        listed = api.get(f"/zones/{ZONE}/client_certificates").json()["result"]

        def evaluate(ip: str, certificate: str | None) -> Any:
            body = {"host": "api.example.com", "ip": ip, "certificate": certificate}
            return session.post(f"{root}/__emulator__/zones/{ZONE}/evaluate", json=body).json()["result"]

        assert [item["id"] for item in listed] == [dashboard["id"]]
        assert evaluate("192.0.2.1", dashboard["certificate"]) == {"outcome": "allowed", "rule": None}
        assert evaluate("192.0.2.1", foreign["certificate"]) == {"outcome": "allowed", "rule": None}
        blocked = evaluate("198.51.100.7", None)  # the skip comes after the block
        assert blocked["outcome"] == "blocked"
        assert blocked["rule"]["ref"] == "base"


@pytest.mark.slow
def test_the_rate_limit_is_an_option_of_the_command() -> None:
    with running_emulator("--token", "cli-token", "--rate-limit", "2", "--rate-window", "60") as server:
        session = requests.Session()
        session.headers["Authorization"] = "Bearer cli-token"
        answers = [session.get(f"{server}/zones/{ZONE}/client_certificates", timeout=10) for _ in range(3)]

    assert [answer.status_code for answer in answers] == [200, 200, 429]
    assert answers[2].headers["Retry-After"]
