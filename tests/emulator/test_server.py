"""The command line: `python -m cloudflare.emulator` serving real HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

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
