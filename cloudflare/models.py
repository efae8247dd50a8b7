"""Typed results of the Cloudflare API: frozen dataclasses built with `from_api()`.

`from_api()` ignores keys it does not know (Cloudflare adds fields over time) and parses timestamps to
aware UTC datetimes, so nothing above the client handles raw dicts or naive times.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from cloudflare.errors import FingerprintMismatchError

RawObject = Mapping[str, Any]


class CertificateStatus(enum.StrEnum):
    ACTIVE = "active"
    PENDING_REVOCATION = "pending_revocation"
    PENDING_REACTIVATION = "pending_reactivation"
    REVOKED = "revoked"


def parse_timestamp(value: Any) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        # Cloudflare's timestamps are UTC; a missing offset still means UTC.
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


_PEM_CERTIFICATE = re.compile(r"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", re.DOTALL)


def der_fingerprint_sha256(pem: str) -> str:
    """SHA-256 of the first certificate's DER, lowercase hex: what the edge compares rules with (FACTS.md §6)."""
    match = _PEM_CERTIFICATE.search(pem)
    if match is None:
        raise ValueError("no PEM certificate")
    der = base64.b64decode("".join(match.group(1).split()), validate=True)
    return hashlib.sha256(der).hexdigest()


def _checked_fingerprint(certificate_id: str, pem: str, reported: str) -> str:
    """The fingerprint of the certificate itself; a different one reported beside it is refused, not trusted."""
    if not pem:
        return reported  # nothing to check it against (an answer without the certificate)
    try:
        computed = der_fingerprint_sha256(pem)
    except ValueError:
        computed = ""
    if not computed or (reported and reported != computed):
        raise FingerprintMismatchError(certificate_id, reported=reported or "none", computed=computed)
    return computed


def _text(data: RawObject, key: str) -> str:
    value = data.get(key)
    return "" if value is None else str(value)


@dataclass(frozen=True)
class ResultInfo:
    page: int
    per_page: int
    count: int
    total_count: int | None
    total_pages: int | None

    @classmethod
    def from_api(cls, data: RawObject | None) -> ResultInfo:
        data = data or {}

        def optional_int(key: str) -> int | None:
            value = data.get(key)
            return int(value) if value is not None else None

        return cls(
            page=int(data.get("page") or 1),
            per_page=int(data.get("per_page") or 0),
            count=int(data.get("count") or 0),
            total_count=optional_int("total_count"),
            total_pages=optional_int("total_pages"),
        )


@dataclass(frozen=True)
class CertificateAuthorityRef:
    id: str
    name: str


@dataclass(frozen=True)
class ClientCertificate:
    id: str
    status: CertificateStatus
    certificate: str
    csr: str
    fingerprint_sha256: str
    serial_number: str
    ski: str
    common_name: str
    organization: str
    organizational_unit: str
    country: str
    state: str
    location: str
    signature: str
    issued_on: datetime | None
    expires_on: datetime | None
    validity_days: int | None
    certificate_authority: CertificateAuthorityRef | None

    @classmethod
    def from_api(cls, data: RawObject) -> ClientCertificate:
        authority = data.get("certificate_authority")
        validity = data.get("validity_days")
        # Rule fields compare lowercase hex (FACTS.md §6): normalise once, here.
        reported = _text(data, "fingerprint_sha256").replace(":", "").lower()
        return cls(
            id=_text(data, "id"),
            status=CertificateStatus(data.get("status") or CertificateStatus.ACTIVE),
            certificate=_text(data, "certificate"),
            csr=_text(data, "csr"),
            fingerprint_sha256=_checked_fingerprint(_text(data, "id"), _text(data, "certificate"), reported),
            serial_number=_text(data, "serial_number"),
            ski=_text(data, "ski"),
            common_name=_text(data, "common_name"),
            organization=_text(data, "organization"),
            organizational_unit=_text(data, "organizational_unit"),
            country=_text(data, "country"),
            state=_text(data, "state"),
            location=_text(data, "location"),
            signature=_text(data, "signature"),
            issued_on=parse_timestamp(data.get("issued_on")),
            expires_on=parse_timestamp(data.get("expires_on")),
            validity_days=int(validity) if validity is not None else None,
            certificate_authority=(
                CertificateAuthorityRef(id=_text(authority, "id"), name=_text(authority, "name"))
                if isinstance(authority, Mapping)
                else None
            ),
        )


@dataclass(frozen=True)
class HostnameAssociation:
    hostnames: tuple[str, ...]
    mtls_certificate_id: str | None = None

    @classmethod
    def from_api(cls, data: RawObject, *, mtls_certificate_id: str | None = None) -> HostnameAssociation:
        return cls(
            hostnames=tuple(data.get("hostnames") or ()),
            mtls_certificate_id=data.get("mtls_certificate_id") or mtls_certificate_id,
        )


@dataclass(frozen=True)
class MTLSCertificate:
    id: str
    name: str
    ca: bool
    certificates: str
    issuer: str
    serial_number: str
    signature: str
    expires_on: datetime | None
    uploaded_on: datetime | None

    @classmethod
    def from_api(cls, data: RawObject) -> MTLSCertificate:
        return cls(
            id=_text(data, "id"),
            name=_text(data, "name"),
            ca=bool(data.get("ca")),
            certificates=_text(data, "certificates"),
            issuer=_text(data, "issuer"),
            serial_number=_text(data, "serial_number"),
            signature=_text(data, "signature"),
            expires_on=parse_timestamp(data.get("expires_on")),
            uploaded_on=parse_timestamp(data.get("uploaded_on")),
        )


@dataclass(frozen=True)
class MTLSAssociation:
    service: str
    status: str

    @classmethod
    def from_api(cls, data: RawObject) -> MTLSAssociation:
        return cls(service=_text(data, "service"), status=_text(data, "status"))


def freeze(value: Any) -> Any:
    """A read-only deep copy of JSON data: mappings become MappingProxyType, lists tuples."""
    if isinstance(value, Mapping):
        return MappingProxyType({key: freeze(item) for key, item in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze(item) for item in value)
    return value


def thaw(value: Any) -> Any:
    """The JSON data back from `freeze`, ready to send."""
    if isinstance(value, Mapping):
        return {key: thaw(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return [thaw(item) for item in value]
    return value


# Fields Cloudflare sets and a request must not send back (the schema marks them readOnly, rulesets_Rule).
READ_ONLY_RULE_FIELDS = ("version", "last_updated", "categories")


@dataclass(frozen=True)
class Rule:
    id: str
    ref: str
    action: str
    expression: str
    description: str
    enabled: bool
    version: str
    last_updated: datetime | None
    # The rule exactly as Cloudflare returned it (read-only), so a rule the portal does not own can be carried
    # back unchanged in a full-list PUT, action_parameters, logging and fields we do not know included.
    raw: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), repr=False, hash=False)

    @classmethod
    def from_api(cls, data: RawObject) -> Rule:
        rule_id = _text(data, "id")
        return cls(
            id=rule_id,
            ref=_text(data, "ref") or rule_id,
            action=_text(data, "action"),
            expression=_text(data, "expression"),
            description=_text(data, "description"),
            enabled=bool(data.get("enabled", True)),
            version=_text(data, "version"),
            last_updated=parse_timestamp(data.get("last_updated")),
            raw=freeze(data),
        )

    @property
    def action_parameters(self) -> Mapping[str, Any] | None:
        parameters = self.raw.get("action_parameters")
        return parameters if isinstance(parameters, Mapping) else None

    @property
    def skips_remaining_rules(self) -> bool:
        """A `skip` of the current ruleset: every rule after it is switched off for what it matches (FACTS.md §14)."""
        return self.action == "skip" and (self.action_parameters or {}).get("ruleset") == "current"

    def to_api(self) -> dict[str, Any]:
        """The rule's definition to send back: as returned, minus read-only fields, keeping its id and ref."""
        definition = (
            thaw(self.raw)
            if self.raw
            else {
                "id": self.id,
                "ref": self.ref,
                "action": self.action,
                "expression": self.expression,
                "description": self.description,
                "enabled": self.enabled,
            }
        )
        for name in READ_ONLY_RULE_FIELDS:
            definition.pop(name, None)
        definition.setdefault("ref", self.ref)  # Cloudflare may leave ref out when it is the id
        return definition


@dataclass(frozen=True)
class Ruleset:
    id: str
    name: str
    kind: str
    phase: str
    version: str
    last_updated: datetime | None
    rules: tuple[Rule, ...]

    @classmethod
    def from_api(cls, data: RawObject) -> Ruleset:
        return cls(
            id=_text(data, "id"),
            name=_text(data, "name"),
            kind=_text(data, "kind"),
            phase=_text(data, "phase"),
            version=_text(data, "version"),
            last_updated=parse_timestamp(data.get("last_updated")),
            rules=tuple(Rule.from_api(rule) for rule in data.get("rules") or ()),
        )

    def rule_by_ref(self, ref: str) -> Rule | None:
        return next((rule for rule in self.rules if rule.ref == ref), None)


@dataclass(frozen=True)
class RuleSpec:
    """A rule as the portal wants it; the client turns it into a request body.

    `id`: the id of the rule it replaces in a full-list PUT (replace_entrypoint), so Cloudflare keeps it as the
    same rule; None for a new rule (Cloudflare also matches by ref, FACTS.md §8).
    """

    ref: str
    expression: str
    action: str = "block"
    description: str = ""
    enabled: bool = True
    id: str | None = None

    def to_api(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ref": self.ref,
            "expression": self.expression,
            "action": self.action,
            "description": self.description,
            "enabled": self.enabled,
        }
        if self.id is not None:
            body["id"] = self.id
        return body
