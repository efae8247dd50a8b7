"""The edge over real HTTPS: a TLS client with (or without) a client certificate, the zone's rules, the echo origin.

The edge serves in a thread on a free port, on the same emulator (and state file) the API calls go to, with the
real clock: TLS lives in real time.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cloudflare_emulator import Emulator
from cloudflare_emulator.edge_server import Edge
from tests.support.edge_client import Answer, Client, serving_edge

from .certificates import Issued, key_and_csr, make_ca, make_leaf
from .conftest import ACCOUNT, TOKEN, ZONE, Api, issue, make_api

ROOT = Path(__file__).resolve().parents[2]
HOST = "api.example.com"
ENTRYPOINT = f"/zones/{ZONE}/rulesets/phases/http_request_firewall_custom/entrypoint"
MTLS = f"/accounts/{ACCOUNT}/mtls_certificates"
ASSOCIATIONS = f"/zones/{ZONE}/certificate_authorities/hostname_associations"
BASE = {
    "ref": "base",
    "action": "block",
    "expression": f'(http.host in {{"{HOST}"}} and (not cf.tls_client_auth.cert_verified '
    "or cf.tls_client_auth.cert_revoked))",
}


def ours(fingerprints: Sequence[str], serials: Sequence[str] = (), issuer_ski: str = "") -> dict[str, str]:
    """Only the portal's certificates pass: managed ones by fingerprint, its own CA's by serial and issuer."""
    admitted = f"cf.tls_client_auth.cert_fingerprint_sha256 in {{{' '.join(json.dumps(f) for f in fingerprints)}}}"
    if serials:
        quoted = " ".join(json.dumps(s) for s in serials)
        admitted = (
            f"({admitted} or (cf.tls_client_auth.cert_serial in {{{quoted}}} "
            f'and cf.tls_client_auth.cert_issuer_ski eq "{issuer_ski}"))'
        )
    return {"ref": "ours", "action": "block", "expression": f'(http.host in {{"{HOST}"}} and not {admitted})'}


@pytest.fixture
def emulator(tmp_path: Path) -> Emulator:
    """The real clock (certificates and TLS live in real time); revocations processed at once."""
    return Emulator(token=TOKEN, state_path=tmp_path / "state.json", revocation_delay=0)


@pytest.fixture
def edge(emulator: Emulator, tmp_path: Path) -> Iterator[Edge]:
    with serving_edge(emulator, ZONE, tmp_path) as edge:
        yield edge


@pytest.fixture
def client(edge: Edge, tmp_path: Path) -> Client:
    return Client(edge.server.port, edge.ca.path, tmp_path)


def put_rules(api: Api, *rules: dict[str, Any]) -> None:
    response = api.put(ENTRYPOINT, {"rules": list(rules)})
    assert response.status_code == 200, response.text


def managed_certificate(api: Api, common_name: str = "alice") -> tuple[Issued, dict[str, Any]]:
    """A certificate the managed CA signs through the API, with the key the client kept."""
    key, csr = key_and_csr(common_name)
    record = issue(api, csr)
    return Issued(x509.load_pem_x509_certificate(record["certificate"].encode()), key), record


def blocked_by(answer: Answer) -> str:
    assert answer.status == 403, answer.text
    assert answer.text.startswith("error code: 1020\n")
    return answer.text.split("'")[1]


# --- the managed CA ----------------------------------------------------------------------------------------


def test_a_managed_certificate_of_ours_reaches_the_origin_with_its_fields(
    client: Client, api: Api, emulator: Emulator
) -> None:
    alice, record = managed_certificate(api)
    put_rules(api, BASE, ours([record["fingerprint_sha256"]]))

    answer = client.call("/v1/things?limit=2", certificate=alice, method="POST", body=b'{"a": 1}')

    assert answer.status == 200, answer.text
    echoed = answer.json()
    assert (echoed["method"], echoed["path"], echoed["query"], echoed["body"]) == (
        "POST",
        "/v1/things",
        "limit=2",
        '{"a": 1}',
    )
    managed_ca = x509.load_pem_x509_certificate(emulator.ca_certificate_pem.encode())
    managed_ski = managed_ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest.hex().upper()
    assert echoed["client_certificate"] == {
        "presented": "true",
        "verified": "true",
        "revoked": "false",
        "fingerprint-sha256": record["fingerprint_sha256"],
        "serial": format(alice.certificate.serial_number, "X"),
        "issuer-ski": managed_ski,
        "subject-dn": "CN=alice",
    }
    assert echoed["headers"]["Host"] == f"{HOST}:{client.port}"
    assert echoed["headers"]["Cf-Connecting-Ip"] == "127.0.0.1"


def test_without_a_certificate_the_base_rule_blocks(client: Client, api: Api) -> None:
    put_rules(api, BASE)

    # As a client on port 443 sends it: the base rule names the hostname without a port.
    assert blocked_by(client.call(headers={"Host": HOST})) == "base"


def test_a_revoked_certificate_is_blocked_by_cert_revoked(client: Client, api: Api) -> None:
    alice, record = managed_certificate(api)
    put_rules(api, BASE, ours([record["fingerprint_sha256"]]))
    assert client.call(certificate=alice, headers={"Host": HOST}).status == 200

    api.delete(f"/zones/{ZONE}/client_certificates/{record['id']}")  # processed at once (revocation_delay=0)

    assert blocked_by(client.call(certificate=alice, headers={"Host": HOST})) == "base"


def test_a_certificate_the_shared_ca_signed_for_another_account_is_verified_but_not_ours(
    client: Client, api: Api, emulator: Emulator
) -> None:
    _, record = managed_certificate(api)
    put_rules(api, BASE, ours([record["fingerprint_sha256"]]))
    foreign = emulator.create_foreign_certificate()
    key = serialization.load_pem_private_key(foreign["private_key"].encode(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    stranger = Issued(x509.load_pem_x509_certificate(foreign["certificate"].encode()), key)

    assert blocked_by(client.call(certificate=stranger, headers={"Host": HOST})) == "ours"


# --- an uploaded CA ------------------------------------------------------------------------------------------


def test_a_leaf_of_an_uploaded_ca_is_verified_and_matched_by_serial_and_issuer_ski(client: Client, api: Api) -> None:
    now = datetime.datetime.now(datetime.UTC)
    ca = make_ca("Company Client CA", now=now)
    uploaded = api.post(MTLS, {"ca": True, "certificates": ca.pem, "name": "company"}).json()["result"]
    assert api.put(ASSOCIATIONS, {"hostnames": [HOST], "mtls_certificate_id": uploaded["id"]}).status_code == 200
    device = make_leaf(ca, "device-7", now=now)
    serial = format(device.certificate.serial_number, "X")
    put_rules(api, BASE, ours(["0" * 64], [serial], ca.ski))

    answer = client.call(certificate=device, headers={"Host": HOST})

    assert answer.status == 200, answer.text
    seen = answer.json()["client_certificate"]
    assert (seen["verified"], seen["revoked"], seen["serial"], seen["issuer-ski"]) == ("true", "false", serial, ca.ski)
    # Another leaf of the same CA is verified, but its serial is not admitted.
    assert blocked_by(client.call(certificate=make_leaf(ca, now=now), headers={"Host": HOST})) == "ours"


def test_a_leaf_of_a_ca_that_was_not_uploaded_completes_the_handshake_and_is_blocked_as_unverified(
    client: Client, api: Api
) -> None:
    now = datetime.datetime.now(datetime.UTC)
    stranger = make_leaf(make_ca("Somebody's CA", now=now), now=now)
    put_rules(api, BASE)

    assert blocked_by(client.call(certificate=stranger, headers={"Host": HOST})) == "base"
    put_rules(api)
    seen = client.call(certificate=stranger).json()["client_certificate"]
    assert (seen["presented"], seen["verified"], seen["issuer-ski"]) == ("true", "false", "")


# --- ip.src and http.host ---------------------------------------------------------------------------------------


def test_ip_src_is_the_tcp_peer(client: Client, api: Api) -> None:
    put_rules(api, {"ref": "office_only", "action": "block", "expression": "not ip.src in {127.0.0.1}"})

    assert client.call(source="127.0.0.1").status == 200
    assert blocked_by(client.call(source="127.0.0.2")) == "office_only"
    # A header is the client's word; ip.src is not.
    spoofed = {"X-Forwarded-For": "127.0.0.1", "CF-Connecting-IP": "127.0.0.1"}
    assert blocked_by(client.call(source="127.0.0.2", headers=spoofed)) == "office_only"


def test_the_host_header_keeps_its_port(client: Client, api: Api) -> None:
    port = client.port
    put_rules(api, {"ref": "with_port", "action": "block", "expression": f'http.host eq "{HOST}:{port}"'})

    assert blocked_by(client.call()) == "with_port"  # http.client sends the port, as curl does
    assert client.call(headers={"Host": HOST}).status == 200


def test_a_rule_written_without_the_port_misses_a_host_header_with_one(client: Client, api: Api) -> None:
    """FACTS.md §14: the portal's rules cover `host:port` with a prefix test; the brief's literal rule does not."""
    portal_scope = (
        f'(lower(http.host) in {{"{HOST}" "{HOST}."}} or (lower(http.host) ge "{HOST}:" '
        f'and lower(http.host) lt "{HOST};")) and not cf.tls_client_auth.cert_verified'
    )
    put_rules(api, BASE, {"ref": "portal_base", "action": "block", "expression": portal_scope})

    assert blocked_by(client.call()) == "portal_base"
    assert blocked_by(client.call(headers={"Host": "API.example.com."})) == "portal_base"


# --- what the origin can trust -------------------------------------------------------------------------------


def test_cf_headers_from_the_client_never_reach_the_origin(client: Client) -> None:
    spoofed = {"Cf-Cert-Verified": "true", "CF-Connecting-IP": "203.0.113.9", "cf-cert-serial": "01"}

    echoed = client.call(headers=spoofed).json()

    assert echoed["client_certificate"]["verified"] == "false"
    assert echoed["client_certificate"]["serial"] == ""
    assert echoed["headers"]["Cf-Connecting-Ip"] == "127.0.0.1"


# --- serving --------------------------------------------------------------------------------------------------


def test_a_silent_connection_does_not_hold_up_other_clients(client: Client) -> None:
    silent = socket.create_connection(("127.0.0.1", client.port))  # no handshake, ever
    with silent, ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(lambda _: client.call().status, range(12)))

    assert statuses == [200] * 12


def test_the_log_leaves_out_the_query_string(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="cloudflare_emulator.edge")

    assert client.call("/v1/items?api_key=s3cr3t-value").status == 200

    assert "/v1/items" in caplog.text
    assert "s3cr3t-value" not in caplog.text


def test_a_rule_the_emulator_cannot_read_answers_500_naming_it(client: Client, api: Api) -> None:
    put_rules(api, {"ref": "by_path", "action": "block", "expression": 'http.request.uri.path eq "/admin"'})

    answer = client.call()

    assert answer.status == 500
    assert "rule by_path" in answer.text


def test_an_origin_that_refuses_connections_answers_521(emulator: Emulator, tmp_path: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        unused = closed.getsockname()[1]
    edge = Edge(
        emulator=emulator,
        zone_id=ZONE,
        host="127.0.0.1",
        port=0,
        ca_path=tmp_path / "edge-ca.pem",
        origin=f"http://127.0.0.1:{unused}",
    )
    thread = threading.Thread(target=edge.serve_forever, daemon=True)
    thread.start()
    try:
        answer = Client(edge.server.port, edge.ca.path, tmp_path).call()
    finally:
        edge.shutdown()
        thread.join(timeout=10)
        edge.close()

    assert (answer.status, answer.text) == (521, "error code: 521\n")


# --- the command -------------------------------------------------------------------------------------------------

LISTENING = "Cloudflare edge emulator listening on "
CA_LINE = "Edge CA certificate for clients (curl --cacert): "


@contextlib.contextmanager
def edge_command(state: Path) -> Iterator[tuple[subprocess.Popen[str], int, Path]]:
    """`python -m cloudflare_emulator edge` on a free port; the process, its port and the edge CA it announced."""
    command = [sys.executable, "-m", "cloudflare_emulator", "edge", "--state", str(state), "--listen", "127.0.0.1:0"]
    command += ["--zone", ZONE, "--revocation-delay", "0"]
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        listening, ca_line = process.stdout.readline(), process.stdout.readline()
        assert listening.startswith(LISTENING), listening
        assert ca_line.startswith(CA_LINE), ca_line
        url = listening.removeprefix(LISTENING).split()[0]
        yield process, int(url.rsplit(":", 1)[1]), Path(ca_line.removeprefix(CA_LINE).strip())
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


@pytest.mark.slow
def test_the_command_sees_what_the_portal_writes_and_stops_cleanly(tmp_path: Path) -> None:
    state = tmp_path / "cloudflare-emulator.json"
    portal = make_api(Emulator(state_path=state, revocation_delay=0))  # the portal's in-process emulator

    with edge_command(state) as (process, port, ca_path):
        assert ca_path == tmp_path / "cloudflare-edge-ca.pem"  # beside the state
        assert stat.S_IMODE(ca_path.with_suffix(".key").stat().st_mode) == 0o600
        client = Client(port, ca_path, tmp_path)
        assert client.call().status == 200  # no rules yet
        # Written by the portal after the edge started: seen at the next request.
        alice, record = managed_certificate(portal)
        put_rules(portal, BASE, ours([record["fingerprint_sha256"]]))
        assert client.call(certificate=alice, headers={"Host": HOST}).status == 200
        assert blocked_by(client.call(headers={"Host": HOST})) == "base"
        portal.delete(f"/zones/{ZONE}/client_certificates/{record['id']}")
        assert blocked_by(client.call(certificate=alice, headers={"Host": HOST})) == "base"

        process.send_signal(signal.SIGINT)  # Ctrl-C
        assert process.wait(timeout=10) == 0
        assert process.stderr is not None
        assert "Traceback" not in process.stderr.read()
    edge_ca = ca_path.read_bytes()

    with edge_command(state) as (process, port, ca_path):
        assert ca_path.read_bytes() == edge_ca  # kept: the --cacert file stays valid across restarts
        assert Client(port, ca_path, tmp_path).call(certificate=alice, headers={"Host": HOST}).status == 403
        process.send_signal(signal.SIGTERM)  # how honcho stops it
        assert process.wait(timeout=10) == 0
