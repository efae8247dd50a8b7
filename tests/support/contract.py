"""Contract checks against Cloudflare's official OpenAPI schema (tests/fixtures/cloudflare-openapi-subset.json;
tests/fixtures/README.md says where it comes from and lists its known defects).

Every request body the client sends and every response it parses (fixtures and emulator answers alike)
goes through `ContractValidator.check`, so a drift between our code and Cloudflare's schema fails a test.
"""

from __future__ import annotations

import copy
import functools
import json
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import requests
from openapi_core import OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse

SPEC_PATH = Path(__file__).resolve().parents[1] / "fixtures" / "cloudflare-openapi-subset.json"
OFFICIAL_BASE = "https://api.cloudflare.com/client/v4"
API_PREFIX = "/client/v4"


class ContractViolation(AssertionError):
    pass


@dataclass(frozen=True)
class Exchange:
    method: str
    url: str
    request_body: bytes | None
    status: int
    response_body: bytes
    response_content_type: str = "application/json"


@functools.cache
def load_spec() -> dict:
    spec = json.loads(SPEC_PATH.read_text())
    spec = copy.deepcopy(spec)
    # SPEC-2024 lists only X-Auth-Email/X-Auth-Key on some operations, but Cloudflare accepts API tokens
    # (Authorization: Bearer) on all of them (FACTS.md §10). Authentication is checked by the emulator
    # and the client tests themselves, so the schema check covers paths, parameters and bodies only.
    spec.pop("security", None)
    for path_item in spec["paths"].values():
        for operation in path_item.values():
            if isinstance(operation, dict):
                operation.pop("security", None)
    hoist_read_only(spec)
    return spec


def hoist_read_only(spec: dict) -> None:
    """Make read-only properties visible as such to the validator.

    The schema marks a ruleset's `id` and `version` read-only through `allOf` or a `$ref` to a read-only
    schema, but the validator only honours `readOnly` on the property schema itself and would demand them
    in create requests.
    """
    schemas = spec["components"]["schemas"]

    def read_only(schema: object) -> bool:
        if not isinstance(schema, dict):
            return False
        if schema.get("readOnly"):
            return True
        ref = schema.get("$ref", "")
        if ref.startswith("#/components/schemas/"):
            return read_only(schemas.get(ref.rsplit("/", 1)[1]))
        return any(read_only(part) for part in schema.get("allOf", ()))

    def visit(node: object) -> None:
        if isinstance(node, dict):
            properties = node.get("properties")
            if isinstance(properties, dict):
                for name, prop in list(properties.items()):
                    if isinstance(prop, dict) and not prop.get("readOnly") and read_only(prop):
                        properties[name] = {"allOf": [prop], "readOnly": True}
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(spec)


@functools.cache
def openapi() -> OpenAPI:
    return OpenAPI.from_dict(load_spec())


def official_url(url: str) -> str:
    """Map any base (emulator on 127.0.0.1, responses' fake host) onto the schema's server URL."""
    parts = urlsplit(url)
    path = parts.path
    if API_PREFIX in path:
        path = path[path.index(API_PREFIX) + len(API_PREFIX) :]
    query = f"?{parts.query}" if parts.query else ""
    return f"{OFFICIAL_BASE}{path}{query}"


class ContractValidator:
    def __init__(self) -> None:
        self.checked: list[Exchange] = []

    def check(self, exchange: Exchange, *, request_too: bool = True) -> None:
        """Validate the exchange; `request_too=False` for requests that break the schema on purpose."""
        request = requests.Request(
            exchange.method,
            official_url(exchange.url),
            data=exchange.request_body,
            headers={"Content-Type": "application/json"} if exchange.request_body else {},
        ).prepare()
        if request_too:
            self.check_request(request)
        response = requests.Response()
        response.status_code = exchange.status
        response.headers["Content-Type"] = exchange.response_content_type
        response._content = exchange.response_body
        response.request = request
        try:
            openapi().validate_response(RequestsOpenAPIRequest(request), RequestsOpenAPIResponse(response))
        except Exception as exc:
            raise ContractViolation(
                f"{exchange.method} {request.url} -> {exchange.status}: response breaks the schema: "
                f"{describe(exc)}\n{exchange.response_body[:2000]!r}"
            ) from exc
        self.checked.append(exchange)

    def check_request(self, request: requests.PreparedRequest) -> None:
        if not (request.url or "").startswith(OFFICIAL_BASE):
            request = request.copy()
            request.url = official_url(request.url or "")
        try:
            openapi().validate_request(RequestsOpenAPIRequest(request))
        except Exception as exc:
            raise ContractViolation(
                f"{request.method} {request.url}: request breaks the schema: {describe(exc)}\n"
                f"{(request.body or b'')[:2000]!r}"
            ) from exc


def describe(exc: BaseException) -> str:
    """openapi-core nests the useful message in __cause__ / schema_errors."""
    parts = [str(exc)]
    cause = exc.__cause__
    while cause is not None:
        parts.append(str(cause))
        for err in getattr(cause, "schema_errors", ()) or ():
            parts.append(f"  at {list(err.absolute_path)}: {err.message}")
        cause = cause.__cause__
    return "\n".join(parts)
