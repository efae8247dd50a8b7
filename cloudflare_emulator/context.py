"""What a route handler gets: the request, the state, the emulator clock and settings."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from werkzeug.wrappers import Request

from . import codes, pki
from .envelope import ApiError
from .state import State, StateStore

IDENTIFIER = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class Settings:
    revocation_delay: float
    reactivation_delay: float
    zone_capacity: int
    rate_limit: int
    rate_window: float
    custom_rules_limit: int


@dataclass
class Context:
    request: Request
    state: State
    store: StateStore
    now: float
    settings: Settings
    args: dict[str, str]
    api_path: str

    def changed(self) -> None:
        self.store.mark_dirty()

    def json_body(self, required: bool = True) -> Any:
        raw = self.request.get_data(cache=True)
        if not raw.strip():
            if required:
                raise ApiError(400, codes.MALFORMED_JSON, "Malformed JSON in request body: the body is empty")
            return None
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, codes.MALFORMED_JSON, f"Malformed JSON in request body: {exc}") from exc

    def json_object(self) -> dict[str, Any]:
        body = self.json_body()
        if not isinstance(body, dict):
            raise ApiError(400, codes.MALFORMED_JSON, "The request body must be a JSON object")
        return body

    def zone(self) -> dict[str, Any]:
        """The zone's state, created on first use: any 32-char lowercase hex id is a zone."""
        zone_id = self._identifier("zone_id")
        zone: dict[str, Any] = self.state["zones"].setdefault(
            zone_id, {"client_certificates": {}, "hostname_associations": {}, "rulesets": {}}
        )
        return zone

    def account(self) -> dict[str, Any]:
        account_id = self._identifier("account_id")
        account: dict[str, Any] = self.state["accounts"].setdefault(account_id, {"mtls_certificates": {}})
        return account

    def managed_ca(self) -> pki.ManagedCA:
        return pki.load_ca(ensure_ca(self.state, self.store, self.now))

    def _identifier(self, name: str) -> str:
        value = self.args[name]
        if not IDENTIFIER.match(value):
            raise ApiError(
                404,
                codes.NO_ROUTE,
                f"Could not route to {self.api_path}, perhaps your object identifier is invalid?",
            )
        return value


def ensure_ca(state: State, store: StateStore, now: float) -> dict[str, Any]:
    """The CA is generated on first need and then kept in the state (so every process signs with it)."""
    if not state.get("ca"):
        state["ca"] = pki.new_ca_record(now)
        store.mark_dirty()
    record: dict[str, Any] = state["ca"]
    return record
