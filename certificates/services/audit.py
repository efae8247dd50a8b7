"""The audit log: who asked (Origin) and what happened (AuditEvent rows, append-only)."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import User

from certificates.models import ApiToken, AuditEvent, Certificate


@dataclass(frozen=True)
class Origin:
    """Who asked, and from where: recorded on every audit event."""

    actor: User | None
    remote_addr: str | None = None


def audit(
    action: str,
    origin: Origin,
    *,
    certificate: Certificate | None = None,
    token: ApiToken | None = None,
    old: str = "",
    new: str = "",
    detail: dict[str, object] | None = None,
) -> AuditEvent:
    event = audit_event(action, origin, certificate=certificate, token=token, old=old, new=new, detail=detail)
    event.save()
    return event


def audit_event(
    action: str,
    origin: Origin,
    *,
    certificate: Certificate | None = None,
    token: ApiToken | None = None,
    old: str = "",
    new: str = "",
    detail: dict[str, object] | None = None,
) -> AuditEvent:
    """The event, unsaved: for AuditEvent.objects.bulk_create when many are recorded at once."""
    actor = origin.actor if origin.actor is not None and origin.actor.is_authenticated else None
    return AuditEvent(
        action=action,
        actor=actor,
        certificate=certificate,
        token=token,
        remote_addr=origin.remote_addr or None,
        old_status=old,
        new_status=new,
        detail=detail or {},
    )
