"""The URL maps: paths below /client/v4 (Cloudflare's API) and below /__emulator__ (the emulator's own
controls), their methods, and the handler for each."""

from __future__ import annotations

from collections.abc import Callable

from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Response

from . import client_certificates, edge, mtls, rulesets
from .context import Context

Handler = Callable[[Context], Response]

ZONE = "/zones/<zone_id>"
ACCOUNT = "/accounts/<account_id>"
LEGACY_WRITES = ["POST", "PUT", "PATCH", "DELETE"]

HANDLERS: dict[str, Handler] = {
    "client_certificates.list": client_certificates.list_all,
    "client_certificates.create": client_certificates.create,
    "client_certificates.get": client_certificates.get_one,
    "client_certificates.reactivate": client_certificates.reactivate,
    "client_certificates.revoke": client_certificates.revoke,
    "hostname_associations.get": mtls.get_hostnames,
    "hostname_associations.put": mtls.put_hostnames,
    "mtls.list": mtls.list_all,
    "mtls.upload": mtls.upload,
    "mtls.get": mtls.get_one,
    "mtls.delete": mtls.delete,
    "mtls.associations": mtls.associations,
    "rulesets.list": rulesets.list_all,
    "rulesets.create": rulesets.create,
    "rulesets.get": rulesets.get_one,
    "rulesets.entrypoint.get": rulesets.get_entrypoint,
    "rulesets.entrypoint.put": rulesets.put_entrypoint,
    "rulesets.rules.add": rulesets.add_rule,
    "rulesets.rules.update": rulesets.update_rule,
    "rulesets.rules.delete": rulesets.delete_rule,
    "legacy.list": rulesets.legacy_list,
    "legacy.get": rulesets.legacy_get_one,
    "legacy.write": rulesets.legacy_write,
}


def _rule(path: str, endpoint: str, methods: list[str]) -> Rule:
    return Rule(path, endpoint=endpoint, methods=methods, strict_slashes=False)


def _legacy_rules(collection: str) -> list[Rule]:
    return [
        _rule(f"{ZONE}/{collection}", "legacy.list", ["GET"]),
        _rule(f"{ZONE}/{collection}", "legacy.write", LEGACY_WRITES),
        _rule(f"{ZONE}/{collection}/<item_id>", "legacy.get", ["GET"]),
        _rule(f"{ZONE}/{collection}/<item_id>", "legacy.write", LEGACY_WRITES),
    ]


URL_MAP = Map(
    [
        _rule(f"{ZONE}/client_certificates", "client_certificates.list", ["GET"]),
        _rule(f"{ZONE}/client_certificates", "client_certificates.create", ["POST"]),
        _rule(f"{ZONE}/client_certificates/<certificate_id>", "client_certificates.get", ["GET"]),
        _rule(f"{ZONE}/client_certificates/<certificate_id>", "client_certificates.reactivate", ["PATCH"]),
        _rule(f"{ZONE}/client_certificates/<certificate_id>", "client_certificates.revoke", ["DELETE"]),
        _rule(f"{ZONE}/certificate_authorities/hostname_associations", "hostname_associations.get", ["GET"]),
        _rule(f"{ZONE}/certificate_authorities/hostname_associations", "hostname_associations.put", ["PUT"]),
        _rule(f"{ACCOUNT}/mtls_certificates", "mtls.list", ["GET"]),
        _rule(f"{ACCOUNT}/mtls_certificates", "mtls.upload", ["POST"]),
        _rule(f"{ACCOUNT}/mtls_certificates/<mtls_certificate_id>", "mtls.get", ["GET"]),
        _rule(f"{ACCOUNT}/mtls_certificates/<mtls_certificate_id>", "mtls.delete", ["DELETE"]),
        _rule(f"{ACCOUNT}/mtls_certificates/<mtls_certificate_id>/associations", "mtls.associations", ["GET"]),
        _rule(f"{ZONE}/rulesets", "rulesets.list", ["GET"]),
        _rule(f"{ZONE}/rulesets", "rulesets.create", ["POST"]),
        _rule(f"{ZONE}/rulesets/phases/<phase>/entrypoint", "rulesets.entrypoint.get", ["GET"]),
        _rule(f"{ZONE}/rulesets/phases/<phase>/entrypoint", "rulesets.entrypoint.put", ["PUT"]),
        _rule(f"{ZONE}/rulesets/<ruleset_id>", "rulesets.get", ["GET"]),
        _rule(f"{ZONE}/rulesets/<ruleset_id>/rules", "rulesets.rules.add", ["POST"]),
        _rule(f"{ZONE}/rulesets/<ruleset_id>/rules/<rule_id>", "rulesets.rules.update", ["PATCH"]),
        _rule(f"{ZONE}/rulesets/<ruleset_id>/rules/<rule_id>", "rulesets.rules.delete", ["DELETE"]),
        *_legacy_rules("firewall/rules"),
        *_legacy_rules("filters"),
    ]
)


ADMIN_HANDLERS: dict[str, Handler] = {
    "edge.evaluate": edge.evaluate_route,
    "edge.dashboard_certificate": edge.dashboard_certificate_route,
    "edge.foreign_certificate": edge.foreign_certificate_route,
}

ADMIN_URL_MAP = Map(
    [
        _rule(f"{ZONE}/evaluate", "edge.evaluate", ["POST"]),
        _rule(f"{ZONE}/dashboard_certificates", "edge.dashboard_certificate", ["POST"]),
        _rule("/foreign_certificates", "edge.foreign_certificate", ["POST"]),
    ]
)
