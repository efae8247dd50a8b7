"""The portal's records: certificates issued through Cloudflare, API tokens, and the audit log."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone


class Certificate(models.Model):
    class Status(models.TextChoices):
        # The row is written before the create call so that an ambiguous failure is never lost.
        ISSUING = "issuing", "Issuing"
        # The create call may have reached Cloudflare but no answer came; reconciliation decides.
        UNCONFIRMED = "unconfirmed", "Issuance unconfirmed"
        FAILED = "failed", "Failed"
        ACTIVE = "active", "Active"
        PENDING_REVOCATION = "pending_revocation", "Pending revocation"
        PENDING_REACTIVATION = "pending_reactivation", "Pending reactivation"
        REVOKED = "revoked", "Revoked"

    REVOCABLE = frozenset({Status.ACTIVE})
    REACTIVATABLE = frozenset({Status.PENDING_REVOCATION})
    PENDING = frozenset({Status.PENDING_REVOCATION, Status.PENDING_REACTIVATION})
    IN_FLIGHT = frozenset({Status.ISSUING, Status.UNCONFIRMED})
    # What counts against the user's maximum and the zone's 100: revoking frees the slot at once (FACTS.md §3).
    HOLDS_A_SLOT = frozenset({Status.ISSUING, Status.UNCONFIRMED, Status.ACTIVE, Status.PENDING_REACTIVATION})

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="certificates")
    name = models.CharField(max_length=100)
    zone_id = models.CharField(max_length=32)
    status = models.CharField(max_length=32, choices=Status.choices, default=Status.ISSUING)
    cloudflare_id = models.CharField(max_length=36, blank=True, default="")
    csr = models.TextField()
    # SHA-256 of the CSR's SubjectPublicKeyInfo (DER): how reconciliation recognises the certificate.
    public_key_sha256 = models.CharField(max_length=64)
    key_type = models.CharField(max_length=16)
    common_name = models.CharField(max_length=64)
    validity_days = models.PositiveIntegerField()
    certificate_pem = models.TextField(blank=True, default="")
    fingerprint_sha256 = models.CharField(max_length=64, blank=True, default="")
    serial_number = models.CharField(max_length=64, blank=True, default="")
    issued_on = models.DateTimeField(null=True, blank=True)
    expires_on = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("-created_at",)
        constraints = [
            models.UniqueConstraint(
                fields=("zone_id", "cloudflare_id"),
                condition=~models.Q(cloudflare_id=""),
                name="certificate_unique_cloudflare_id_per_zone",
            ),
        ]
        indexes = [
            # The dashboard and quota checks: a user's certificates by status.
            models.Index(fields=("owner", "status"), name="certificate_owner_status"),
            # Workers: certificates of a zone in a given status (pending transitions, in-flight issuance).
            models.Index(fields=("zone_id", "status"), name="certificate_zone_status"),
            # Admin search and firewall rules look certificates up by fingerprint.
            models.Index(fields=("fingerprint_sha256",), name="certificate_fingerprint"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.common_name}, {self.get_status_display()})"

    @property
    def is_revocable(self) -> bool:
        return self.status in self.REVOCABLE

    @property
    def is_reactivatable(self) -> bool:
        return self.status in self.REACTIVATABLE

    @property
    def is_pending(self) -> bool:
        return self.status in self.PENDING or self.status in self.IN_FLIGHT

    @property
    def is_expired(self) -> bool:
        return self.expires_on is not None and self.expires_on <= timezone.now()

    @property
    def days_left(self) -> int | None:
        if self.expires_on is None:
            return None
        return max(0, (self.expires_on - timezone.now()) // timedelta(days=1))


class ApiToken(models.Model):
    """A personal API token. Only its SHA-256 is stored; the token is shown once, when it is made."""

    PREFIX = "mtp_"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    token_sha256 = models.CharField(max_length=64, unique=True)
    # The first characters, shown in lists so a user can tell tokens apart without the secret.
    hint = models.CharField(max_length=12)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return f"{self.name} ({self.hint}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @classmethod
    def generate(cls) -> str:
        return cls.PREFIX + secrets.token_urlsafe(32)

    @staticmethod
    def digest(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()


class AuditEvent(models.Model):
    """Append-only: who did what, when, from where. The history on a certificate's page comes from here."""

    class Action(models.TextChoices):
        ISSUED = "certificate.issued", "Certificate issued"
        ISSUE_FAILED = "certificate.issue_failed", "Issuance failed"
        ISSUE_UNCONFIRMED = "certificate.issue_unconfirmed", "Issuance unconfirmed"
        ADOPTED = "certificate.adopted", "Certificate adopted by reconciliation"
        DOWNLOADED = "certificate.downloaded", "Certificate downloaded"
        REVOCATION_REQUESTED = "certificate.revocation_requested", "Revocation requested"
        REVOKED = "certificate.revoked", "Certificate revoked"
        REACTIVATION_REQUESTED = "certificate.reactivation_requested", "Reactivation requested"
        REACTIVATED = "certificate.reactivated", "Certificate reactivated"
        TOKEN_CREATED = "token.created", "API token created"
        TOKEN_REVOKED = "token.revoked", "API token revoked"

    action = models.CharField(max_length=64, choices=Action.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    certificate = models.ForeignKey(Certificate, null=True, blank=True, on_delete=models.PROTECT, related_name="events")
    token = models.ForeignKey(ApiToken, null=True, blank=True, on_delete=models.SET_NULL, related_name="events")
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    old_status = models.CharField(max_length=32, blank=True, default="")
    new_status = models.CharField(max_length=32, blank=True, default="")
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("-created_at", "-id")
        indexes = [
            # A certificate's history, newest first.
            models.Index(fields=("certificate", "-created_at"), name="audit_certificate_created"),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.get_action_display()}"
