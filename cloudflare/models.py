"""Typed results of the Cloudflare API: frozen dataclasses built with `from_api()`.

`from_api()` ignores keys it does not know (Cloudflare adds fields over time) and parses timestamps to
aware UTC datetimes, so nothing above the client handles raw dicts or naive times.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

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
        return cls(
            id=_text(data, "id"),
            status=CertificateStatus(data.get("status") or CertificateStatus.ACTIVE),
            certificate=_text(data, "certificate"),
            csr=_text(data, "csr"),
            # Rule fields compare lowercase hex (FACTS.md §6): normalise once, here.
            fingerprint_sha256=_text(data, "fingerprint_sha256").replace(":", "").lower(),
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
        )


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
    """A rule as the portal wants it; the client turns it into a request body."""

    ref: str
    expression: str
    action: str = "block"
    description: str = ""
    enabled: bool = True

    def to_api(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "expression": self.expression,
            "action": self.action,
            "description": self.description,
            "enabled": self.enabled,
        }
