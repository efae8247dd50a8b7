"""API tokens: made, revoked, and checked on each API request."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.utils import timezone

from certificates.models import ApiToken, AuditEvent
from certificates.services.audit import Origin, audit
from certificates.services.cleaning import clean_name
from certificates.services.errors import PolicyError, TokenScopeError


def api_token_create(
    *,
    user: User,
    name: str,
    origin: Origin,
    days: int | None = None,
    scope: str = ApiToken.Scope.READ_WRITE,
) -> tuple[ApiToken, str]:
    """Make a token; the clear text is returned once and never stored."""
    name = clean_name(name, what="token")
    lifetime = _token_lifetime(days)
    if scope not in ApiToken.Scope.values:
        raise PolicyError("A token is either read-only or read-write.")
    secret = ApiToken.generate()
    token = ApiToken.objects.create(
        owner=user,
        name=name,
        token_sha256=ApiToken.digest(secret),
        hint=secret[: len(ApiToken.PREFIX) + 4],
        expires_at=timezone.now() + lifetime,
        scope=scope,
    )
    audit(
        AuditEvent.Action.TOKEN_CREATED,
        origin,
        token=token,
        detail={"name": name, "scope": scope, "days": lifetime.days},
    )
    return token, secret


def _token_lifetime(days: int | None) -> timedelta:
    if days is None:
        days = settings.API_TOKEN_DEFAULT_DAYS
    maximum = settings.API_TOKEN_MAX_DAYS
    if not 1 <= days <= maximum:
        raise PolicyError(f"A token lasts from 1 to {maximum} days; {days} is not allowed.")
    return timedelta(days=days)


def api_token_revoke(*, token: ApiToken, origin: Origin) -> None:
    if ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now()):
        audit(AuditEvent.Action.TOKEN_REVOKED, origin, token=token, detail={"name": token.name})


def api_token_authenticate(secret: str, *, for_write: bool = True) -> User | None:
    """The owner of a live token, or None (unknown, revoked, expired, deactivated owner).

    A read-only token used for a write raises TokenScopeError: the caller is known, but not allowed.
    """
    if not secret.startswith(ApiToken.PREFIX):
        return None
    now = timezone.now()
    token = (
        ApiToken.objects.select_related("owner")
        .filter(token_sha256=ApiToken.digest(secret), revoked_at__isnull=True, expires_at__gt=now)
        .first()
    )
    if token is None or not token.owner.is_active:
        return None
    if for_write and token.is_read_only:
        raise TokenScopeError("This token is read-only; make a read-write token to change anything.")
    # At most one write a minute per token: last_used_at is informative, not a log.
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.owner
