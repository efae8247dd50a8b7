"""Auth, routing, malformed input, rate limit, fault injection, shared state, admin routes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests

from cloudflare_emulator import Emulator, LoggedRequest

from .conftest import TOKEN, ZONE, Api, FakeClock, error_code, issue, make_api, make_csr

CERTS = f"/zones/{ZONE}/client_certificates"


# --- auth and routing ----------------------------------------------------------------------------------


def test_missing_or_malformed_authorization_is_9106(emulator: Emulator) -> None:
    api = make_api(emulator, token=None)
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer "}):
        response = api.get(CERTS, headers=headers)
        assert response.status_code == 400
        assert error_code(response) == 9106


def test_wrong_token_is_9109(emulator: Emulator) -> None:
    response = make_api(emulator, token="wrong").get(CERTS)
    assert response.status_code == 403
    assert response.json()["errors"] == [{"code": 9109, "message": "Invalid access token"}]


def test_any_token_is_accepted_when_none_is_configured(clock: FakeClock) -> None:
    assert make_api(Emulator(clock=clock), token="anything").get(CERTS).status_code == 200


def test_invalid_zone_id_is_7003(api: Api) -> None:
    response = api.get("/zones/not-a-zone/client_certificates")
    assert response.status_code == 404
    assert error_code(response) == 7003
    assert "perhaps your object identifier is invalid" in response.json()["errors"][0]["message"]


def test_unknown_route_and_wrong_method(api: Api) -> None:
    unknown = api.get("/zones/nothing/here/at/all", invalid_request="not a Cloudflare route")
    assert unknown.status_code == 404
    assert unknown.json()["errors"] == [{"code": 7003, "message": "No route for the URI"}]
    wrong = api.put(CERTS, {}, invalid_request="PUT is not an operation here")
    assert wrong.status_code == 405
    assert "POST" in wrong.headers["Allow"]


@pytest.mark.parametrize("raw", [b"{not json", b"", b"[1, 2]", b"\xff\xfe"])
def test_malformed_bodies_get_an_envelope_not_a_traceback(api: Api, raw: bytes) -> None:
    response = api.post(CERTS, raw=raw, invalid_request="malformed body on purpose")
    assert 400 <= response.status_code < 500
    assert "Traceback" not in response.text


def test_unexpected_errors_become_a_500_envelope(
    api: Api, emulator: Emulator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from cloudflare_emulator import routes

    def explode(context: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setitem(routes.HANDLERS, "client_certificates.list", explode)
    response = api.get(CERTS)
    assert response.status_code == 500
    assert "boom" not in response.text
    assert "boom" in caplog.text
    assert TOKEN not in caplog.text


# --- rate limit ----------------------------------------------------------------------------------------


def test_rate_limit_429_then_blocked_for_the_window(clock: FakeClock) -> None:
    emulator = Emulator(token=TOKEN, clock=clock, rate_limit=3, rate_window=300.0)
    api = make_api(emulator)
    remaining = [api.get(CERTS).headers["X-RateLimit-Remaining"] for _ in range(3)]
    assert remaining == ["2", "1", "0"]

    refused = api.get(CERTS)
    assert refused.status_code == 429
    assert error_code(refused) == 10100
    assert refused.json()["errors"][0]["message"].startswith("More than 3 requests per 300 seconds reached")
    assert refused.headers["Retry-After"] == "300"
    assert refused.headers["X-RateLimit-Reset"].endswith("GMT")
    assert refused.headers["X-RateLimit-Limit"] == "3"

    # FACTS §9: once tripped, every call is blocked for the next five minutes, even after the window slides.
    clock.advance(299.5)
    still = api.get(CERTS)
    assert still.status_code == 429
    assert still.headers["Retry-After"] == "1"
    clock.advance(0.5)
    assert api.get(CERTS).status_code == 200


def test_rate_limit_window_slides(clock: FakeClock) -> None:
    api = make_api(Emulator(token=TOKEN, clock=clock, rate_limit=2, rate_window=10.0))
    api.get(CERTS)
    clock.advance(6)
    api.get(CERTS)
    clock.advance(5)  # the first request left the window
    assert api.get(CERTS).status_code == 200


# --- faults --------------------------------------------------------------------------------------------


def test_fault_rate_limit(api: Api, emulator: Emulator) -> None:
    emulator.faults.rate_limit(times=2, retry_after=7, method="GET")
    assert api.post(CERTS, {"csr": make_csr(), "validity_days": 1}).status_code == 200  # method filter
    for _ in range(2):
        response = api.get(CERTS)
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "7"
    assert api.get(CERTS).status_code == 200


@pytest.mark.parametrize("status", [500, 502, 503])
def test_fault_server_error_envelope(api: Api, emulator: Emulator, status: int) -> None:
    emulator.faults.server_error(status=status, path=r"/client_certificates$")
    assert api.get(f"/zones/{ZONE}/rulesets").status_code == 200  # path filter
    response = api.get(CERTS)
    assert response.status_code == status
    assert response.json()["success"] is False
    assert api.get(CERTS).status_code == 200


def test_fault_server_error_html_and_empty(api: Api, emulator: Emulator) -> None:
    emulator.faults.server_error(status=502, html=True)
    emulator.faults.server_error(status=503, empty=True)
    html = api.get(CERTS)
    assert html.status_code == 502
    assert html.headers["Content-Type"].startswith("text/html")
    assert "502 Bad Gateway" in html.text
    empty = api.get(CERTS)
    assert empty.status_code == 503
    assert empty.content == b""


def test_fault_latency(api: Api, emulator: Emulator) -> None:
    emulator.faults.latency(0.2)
    started = time.monotonic()
    assert api.get(CERTS).status_code == 200
    assert time.monotonic() - started >= 0.2
    emulator.faults.latency(5.0)
    started = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        api.get(CERTS, timeout=0.1)
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("mode", ["timeout", "server_error"])
def test_fault_create_commits_then_fails(api: Api, emulator: Emulator, mode: str) -> None:
    emulator.faults.create_commits_then_fails(mode=mode)
    csr = make_csr("ambiguous")
    assert api.get(CERTS).status_code == 200  # only the create is affected
    if mode == "timeout":
        with pytest.raises(requests.exceptions.ReadTimeout):
            api.post(CERTS, {"csr": csr, "validity_days": 30}, timeout=5)
    else:
        assert api.post(CERTS, {"csr": csr, "validity_days": 30}).status_code == 500
    # The certificate exists anyway: the client must reconcile by listing and matching the CSR.
    listed = api.get(CERTS).json()["result"]
    assert [cert["csr"] for cert in listed] == [csr]


def test_fault_connect_error_is_not_logged(api: Api, emulator: Emulator) -> None:
    emulator.faults.connect_error()
    with pytest.raises(requests.exceptions.ConnectTimeout):
        api.get(CERTS)
    assert emulator.request_log == []
    assert api.get(CERTS).status_code == 200


def test_faults_clear(api: Api, emulator: Emulator) -> None:
    emulator.faults.server_error(times=3)
    emulator.faults.clear()
    assert api.get(CERTS).status_code == 200


def test_admin_routes(api: Api, emulator: Emulator, clock: FakeClock) -> None:
    added = api.post("/__emulator__/faults", {"kind": "server_error", "status": 503, "times": 1})
    assert added.status_code == 200
    assert api.get(CERTS).status_code == 503
    api.post("/__emulator__/faults", {"kind": "rate_limit", "retry_after": 3})
    assert api.delete("/__emulator__/faults").json()["result"] == []
    bad = api.post("/__emulator__/faults", {"kind": "meteor"})
    assert bad.status_code == 400

    log = api.get("/__emulator__/log").json()["result"]
    assert log == [{"at": clock.now, "method": "GET", "path": CERTS, "status": 503}]
    assert emulator.request_log == [LoggedRequest(clock.now, "GET", CERTS, 503)]

    issue(api, make_csr())
    assert api.post("/__emulator__/reset").status_code == 200
    assert emulator.request_log == []
    assert api.get(CERTS).json()["result"] == []
    assert make_api(emulator, token="wrong").get("/__emulator__/log").status_code == 403


# --- shared state --------------------------------------------------------------------------------------


def test_state_file_is_shared_between_instances(tmp_path: Path, clock: FakeClock) -> None:
    state = tmp_path / "cloudflare.json"
    writer = make_api(Emulator(token=TOKEN, state_path=state, clock=clock))
    reader_emulator = Emulator(token=TOKEN, state_path=state, clock=clock)
    reader = make_api(reader_emulator)
    assert reader.get(CERTS).json()["result"] == []  # the reader has loaded the (empty) state already

    created = issue(writer, make_csr("shared-state"))
    assert [c["id"] for c in reader.get(CERTS).json()["result"]] == [created["id"]]
    reader.delete(f"{CERTS}/{created['id']}")
    assert writer.get(f"{CERTS}/{created['id']}").json()["result"]["status"] == "pending_revocation"

    # Both sign with the one CA kept in the file; the file is readable JSON without the token in it.
    data = json.loads(state.read_text())
    assert data["ca"]["certificate_pem"] == reader_emulator.ca_certificate_pem
    assert set(data["zones"]) == {ZONE}
    assert TOKEN not in state.read_text()


def test_rate_limit_is_shared_through_the_state_file(tmp_path: Path, clock: FakeClock) -> None:
    state = tmp_path / "cloudflare.json"
    first = make_api(Emulator(token=TOKEN, state_path=state, clock=clock, rate_limit=2))
    second = make_api(Emulator(token=TOKEN, state_path=state, clock=clock, rate_limit=2))
    first.get(CERTS)
    second.get(CERTS)
    assert first.get(CERTS).status_code == 429
