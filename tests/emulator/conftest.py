"""Fixtures for the emulator tests: a fake clock, an emulator, and an API helper that checks every
exchange against Cloudflare's official schema (tests/support/contract.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse

from cloudflare_emulator import Emulator
from cloudflare_emulator.wsgi_transport import mount_wsgi_app
from tests.support.contract import ContractValidator, ContractViolation, Exchange, describe, official_url, openapi

TOKEN = "test-token-123"
ZONE = "023e105f4ecef8ad9ca31a8372d0c353"
OTHER_ZONE = "9f1839b6152d298aca64c4e906b6d074"
ACCOUNT = "01a7362d577a6c3019a474fd6f485823"
BASE = "http://emulator.test/client/v4"
START = 1_800_000_000.0

# Requests the official 2024 schema rejects although they are what Cloudflare documents (see the report):
# for these only the response is checked.
SCHEMA_DEFECT_MOVE_ONLY = "a PATCH body with only `position` has no `action` for the discriminator"
SCHEMA_DEFECT_LEGACY_ZONE_ID = "legacy firewall/filters paths declare zone_id readOnly"


class FakeClock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Api:
    """`requests` against the emulator in-process; each exchange is checked against the schema."""

    session: requests.Session
    contract: ContractValidator
    base: str = BASE

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        invalid_request: str | None = None,
        timeout: float | None = None,
    ) -> requests.Response:
        """`invalid_request` names why the request is deliberately (or per a schema defect) off-schema."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        all_headers = {"Content-Type": "application/json"} if data is not None else {}
        all_headers.update(headers or {})
        response = self.session.request(method, self.base + path, data=data, headers=all_headers, timeout=timeout)
        self.check(method, path, data, response, invalid_request)
        return response

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.call("GET", path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        return self.call("POST", path, body, **kwargs)

    def put(self, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        return self.call("PUT", path, body, **kwargs)

    def patch(self, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        return self.call("PATCH", path, body, **kwargs)

    def delete(self, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        return self.call("DELETE", path, body, **kwargs)

    def check(
        self, method: str, path: str, data: bytes | None, response: requests.Response, invalid_request: str | None
    ) -> None:
        if path.startswith("/__emulator__"):
            return  # the emulator's own controls are not Cloudflare's API
        content_type = response.headers.get("Content-Type", "")
        if response.status_code >= 500 or "json" not in content_type:
            # The schema declares no 5xx answers and no HTML bodies: check the request, and that any JSON
            # body is still an error envelope.
            if invalid_request is None:
                self.contract.check_request(_prepared(method, path, data))
            if "json" in content_type:
                assert_failure_envelope(response.json())
            return
        if invalid_request is None:
            self.contract.check(Exchange(method, BASE + path, data, response.status_code, response.content))
        else:
            check_response_only(method, path, data, response)


def _prepared(method: str, path: str, data: bytes | None) -> requests.PreparedRequest:
    headers = {"Content-Type": "application/json"} if data else {}
    return requests.Request(method, official_url(BASE + path), data=data, headers=headers).prepare()


def check_response_only(method: str, path: str, data: bytes | None, response: requests.Response) -> None:
    """Validate the response for an off-schema request; unknown routes still must answer an envelope."""
    if response.status_code >= 400:
        assert_failure_envelope(response.json())
    request = _prepared(method, path, data)
    checked = requests.Response()
    checked.status_code = response.status_code
    checked.headers["Content-Type"] = "application/json"
    checked._content = response.content
    checked.request = request
    try:
        openapi().validate_response(RequestsOpenAPIRequest(request), RequestsOpenAPIResponse(checked))
    except Exception as exc:
        if type(exc).__name__ in ("PathNotFound", "OperationNotFound"):
            return  # not a schema route (unknown URI, wrong method): the envelope check above is what applies
        raise ContractViolation(f"{method} {path} -> {response.status_code}: {describe(exc)}") from exc


def assert_failure_envelope(body: Any) -> None:
    assert isinstance(body, dict)
    assert body["success"] is False
    assert body["result"] is None
    assert body["messages"] == []
    assert body["errors"]
    for error in body["errors"]:
        assert isinstance(error["code"], int)
        assert error["code"] >= 1000
        assert isinstance(error["message"], str)
        assert error["message"]
        assert "Traceback" not in error["message"]


def error_code(response: requests.Response) -> int:
    code: int = response.json()["errors"][0]["code"]
    return code


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def emulator(clock: FakeClock) -> Emulator:
    return Emulator(token=TOKEN, clock=clock, revocation_delay=30.0, reactivation_delay=30.0)


def make_api(emulator: Emulator, token: str | None = TOKEN) -> Api:
    session = requests.Session()
    if token is not None:
        session.headers["Authorization"] = f"Bearer {token}"
    mount_wsgi_app(session, BASE, emulator.wsgi_app)
    return Api(session, ContractValidator())


@pytest.fixture
def api(emulator: Emulator) -> Api:
    return make_api(emulator)


def make_key(kind: str = "ec") -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def make_csr(common_name: str = "portal-user-1", key_kind: str = "ec", **attributes: str) -> str:
    oids = {
        "O": NameOID.ORGANIZATION_NAME,
        "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
        "C": NameOID.COUNTRY_NAME,
        "ST": NameOID.STATE_OR_PROVINCE_NAME,
        "L": NameOID.LOCALITY_NAME,
    }
    names = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    names += [x509.NameAttribute(oids[key], value) for key, value in attributes.items()]
    csr = (
        x509.CertificateSigningRequestBuilder().subject_name(x509.Name(names)).sign(make_key(key_kind), hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture(scope="session")
def shared_csr() -> str:
    """One CSR reused where only the count of certificates matters (signing is what takes time)."""
    return make_csr("bulk-user")


def issue(api: Api, csr: str, zone: str = ZONE, validity_days: int = 365) -> dict[str, Any]:
    response = api.post(f"/zones/{zone}/client_certificates", {"csr": csr, "validity_days": validity_days})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()["result"]
    return result
