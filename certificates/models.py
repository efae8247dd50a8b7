"""The portal's records: certificates (issued through Cloudflare or by a portal CA), API tokens, the audit log."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone


class CertificateAuthority(models.Model):
    """A portal CA (DESIGN.md "Issuers", 2: bring your own CA). The portal signs CSRs with it; Cloudflare trusts it
    once it is uploaded to the account (`mtls_certificates`) and associated with the API hostnames.

    Its private key is kept encrypted with PORTAL_CA_ENCRYPTION_KEY (certificates.authority.keystore): it is
    never shown again, never logged, and unreadable without that key.
    """

    class Status(models.TextChoices):
        # Made or imported in the portal, not yet trusted by Cloudflare.
        CREATED = "created", "Created, not uploaded"
        # Uploaded with `ca: true` and associated with the API hostnames: certificates it signs verify at the edge.
        TRUSTED = "trusted", "Uploaded and associated"
        # Hostname associations removed and deleted from the account: nothing it signed verifies any more.
        REMOVED = "removed", "Removed from Cloudflare"

    name = models.CharField(max_length=100)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CREATED)
    # "ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "rsa-4096" (certificates.authority.algorithms).
    key_algorithm = models.CharField(max_length=16)
    imported = models.BooleanField(default=False)
    certificate_pem = models.TextField()
    # The certificates above this one (an imported intermediate's issuers), for bundles and origins; empty when
    # the CA is its own root.
    chain_pem = models.TextField(blank=True, default="")
    # MultiFernet token of the PKCS#8 PEM private key (certificates.authority.keystore).
    encrypted_key = models.TextField()
    # Uppercase hex, as the Rules language's cf.tls_client_auth.cert_issuer_ski shows it (FACTS.md §6).
    subject_key_identifier = models.CharField(max_length=64, unique=True)
    subject = models.CharField(max_length=500)
    not_before = models.DateTimeField()
    not_after = models.DateTimeField()
    # The account's `mtls_certificates` id once uploaded.
    cloudflare_id = models.CharField(max_length=36, blank=True, default="")
    # The CRL published for this CA (certificates.authority.crl): its number only grows.
    crl_number = models.PositiveBigIntegerField(default=0)
    crl_der = models.BinaryField(blank=True, default=b"")
    crl_this_update = models.DateTimeField(null=True, blank=True)
    crl_next_update = models.DateTimeField(null=True, blank=True)
    # Set in the same transaction as every change the CRL must show (a revocation, an owner deactivated); a CRL
    # built after it shows the change (certificates.services.crls).
    crl_requested_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("-created_at",)
        verbose_name = "portal CA"
        verbose_name_plural = "portal CAs"

    def __str__(self) -> str:
        return f"{self.name} ({self.get_status_display().lower()})"


class OwnerSerialTag(models.Model):
    """Eight hex digits that every serial the portal CAs sign for this user carries after the zone's marker, so that
    one prefix test in a rule covers all the user's certificates (certificates/firewall/compiler.py)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="serial_tag")
    tag = models.CharField(max_length=8, unique=True)

    def __str__(self) -> str:
        return self.tag


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
        # Past expires_on: Cloudflare still lists it as active, but it no longer verifies.
        EXPIRED = "expired", "Expired"

    REVOCABLE = frozenset({Status.ACTIVE})
    REACTIVATABLE = frozenset({Status.PENDING_REVOCATION})
    PENDING = frozenset({Status.PENDING_REVOCATION, Status.PENDING_REACTIVATION})
    IN_FLIGHT = frozenset({Status.ISSUING, Status.UNCONFIRMED})
    # What counts against the user's maximum and the zone's 100: revoking frees the slot at once (FACTS.md §3).
    HOLDS_A_SLOT = frozenset({Status.ISSUING, Status.UNCONFIRMED, Status.ACTIVE, Status.PENDING_REACTIVATION})
    # Certificates a client may still use: the binding rules tie them to their owner's networks.
    USABLE = frozenset({Status.ACTIVE, Status.PENDING_REACTIVATION})
    # Statuses Cloudflare reports that the portal mirrors.
    REMOTE = frozenset({Status.ACTIVE, Status.PENDING_REVOCATION, Status.PENDING_REACTIVATION, Status.REVOKED})

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="certificates")
    name = models.CharField(max_length=100)
    zone_id = models.CharField(max_length=32)
    # The portal CA that signed it; None for Cloudflare's managed CA (cloudflare_id then names it at Cloudflare).
    authority = models.ForeignKey(
        CertificateAuthority, null=True, blank=True, on_delete=models.PROTECT, related_name="certificates"
    )
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
    # Portal CA: uppercase hex, as cf.tls_client_auth.cert_serial shows it. Managed CA: as Cloudflare's API gives it.
    serial_number = models.CharField(max_length=64, blank=True, default="")
    revoked_at = models.DateTimeField(null=True, blank=True)
    issued_on = models.DateTimeField(null=True, blank=True)
    expires_on = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    # Worker bookkeeping for rows in flight (reconciling an unconfirmed create).
    attempts = models.PositiveIntegerField(default=0)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    # Expiry reminders already sent, by days-before (e.g. [30, 7]): each is sent once.
    reminders_sent = models.JSONField(default=list, blank=True)
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
            # A CA never signs two certificates with one serial (RFC 5280 §4.1.2.2); 80 random bits make a clash
            # unlikely, and this makes it impossible. It also serves the CRL's lookups by CA.
            models.UniqueConstraint(
                fields=("authority", "serial_number"),
                condition=models.Q(authority__isnull=False),
                name="certificate_unique_serial_per_authority",
            ),
        ]
        indexes = [
            # The dashboard and quota checks: a user's certificates by status.
            models.Index(fields=("owner", "status"), name="certificate_owner_status"),
            # Workers: certificates of a zone in a given status (pending transitions, in-flight issuance).
            models.Index(fields=("zone_id", "status"), name="certificate_zone_status"),
            # Admin search and firewall rules look certificates up by fingerprint.
            models.Index(fields=("fingerprint_sha256",), name="certificate_fingerprint"),
            # The CRL of a portal CA: its revoked certificates.
            models.Index(fields=("authority", "status"), name="certificate_authority_status"),
            # Every issuance: is this key in the zone already (services.quotas.refuse_known_key)? Without it the
            # check reads every certificate of the zone.
            models.Index(fields=("zone_id", "public_key_sha256"), name="certificate_zone_public_key"),
            # The dashboard's and GET /api/v1/certificates' default page (certificates/listing.py): a user's
            # newest first, read a page at a time from the index. The expiry sorts order by
            # Coalesce(expires_on, ...) and sort a user's rows in memory (hundreds at most): no index for them.
            models.Index(fields=("owner", "created_at"), name="certificate_owner_created"),
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

    class Scope(models.TextChoices):
        READ_ONLY = "read_only", "read-only"
        READ_WRITE = "read_write", "read-write"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    token_sha256 = models.CharField(max_length=64, unique=True)
    # The first characters, shown in lists so a user can tell tokens apart without the secret.
    hint = models.CharField(max_length=12)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Chosen when the token is made (API_TOKEN_DEFAULT_DAYS, at most API_TOKEN_MAX_DAYS); a leaked token
    # that nobody revokes stops working on its own.
    expires_at = models.DateTimeField()
    scope = models.CharField(max_length=10, choices=Scope.choices, default=Scope.READ_WRITE)

    class Meta:
        ordering = ("-created_at",)
        verbose_name = "API token"
        verbose_name_plural = "API tokens"

    def __str__(self) -> str:
        return f"{self.name} ({self.hint}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @property
    def is_expired(self) -> bool:
        return self.expires_at <= timezone.now()

    @property
    def is_read_only(self) -> bool:
        return self.scope == self.Scope.READ_ONLY

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
        # A certificate made outside the portal (Cloudflare's dashboard), given to a user by staff.
        ADOPTED_BY_STAFF = "certificate.adopted_by_staff", "Certificate adopted by staff"
        # A certificate made outside the portal, revoked by staff instead of adopted (it has no Certificate row).
        UNKNOWN_REVOKED = "unknown_certificate.revoked", "Unknown certificate revoked by staff"
        DOWNLOADED = "certificate.downloaded", "Certificate downloaded"
        REVOCATION_REQUESTED = "certificate.revocation_requested", "Revocation requested"
        REVOKED = "certificate.revoked", "Certificate revoked"
        CA_CREATED = "authority.created", "Portal CA created"
        CA_IMPORTED = "authority.imported", "Portal CA imported"
        CA_UPLOADED = "authority.uploaded", "Portal CA uploaded to Cloudflare"
        CA_REMOVED = "authority.removed", "Portal CA removed from Cloudflare"
        ZONE_ISSUER_CHANGED = "zone.issuer_changed", "Zone issuer changed"
        # An owner told to renew certificates of a portal CA that no longer issues for their zone.
        ROTATION_NOTICE_SENT = "authority.rotation_notice_sent", "Told to renew: the CA no longer issues"
        REACTIVATION_REQUESTED = "certificate.reactivation_requested", "Reactivation requested"
        REACTIVATED = "certificate.reactivated", "Certificate reactivated"
        STATUS_CHANGED = "certificate.status_changed", "Status changed at Cloudflare"
        EXPIRED = "certificate.expired", "Certificate expired"
        REMINDER_SENT = "certificate.reminder_sent", "Expiry reminder sent"
        ALLOWLIST_CHANGED = "allowlist.changed", "Allowlist changed"
        TOKEN_CREATED = "token.created", "API token created"
        TOKEN_REVOKED = "token.revoked", "API token revoked"
        ACCESS_REQUESTED = "access.requested", "Access requested from staff"
        ACCESS_DECIDED = "access.decided", "Access request decided by staff"

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


class AllowlistEntry(models.Model):
    """A network a user's certificates may be used from. A user with no entries may connect from anywhere."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="allowlist")
    # Normalized CIDR (ipaddress.ip_network(..., strict=True)), e.g. 192.0.2.0/24 or 2001:db8::/32.
    network = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("network",)
        verbose_name = "allowlist entry"
        verbose_name_plural = "allowlist entries"
        constraints = [models.UniqueConstraint(fields=("owner", "network"), name="allowlist_unique_network_per_user")]

    def __str__(self) -> str:
        return self.network


class FirewallState(models.Model):
    """Per zone: who holds the sync lease, and what the last sync pushed."""

    zone_id = models.CharField(max_length=32, unique=True)
    # A lease instead of a long transaction: a sync claims it with a compare-and-set update.
    lease_owner = models.CharField(max_length=64, blank=True, default="")
    lease_until = models.DateTimeField(null=True, blank=True)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    last_plan = models.JSONField(default=dict, blank=True)
    last_error = models.TextField(blank=True, default="")
    ruleset_id = models.CharField(max_length=32, blank=True, default="")
    ruleset_version = models.CharField(max_length=32, blank=True, default="")
    # When the last successful sync read the database: what was committed before it is in force at the edge
    # (since last_synced_at), unless the sync had to leave it out (below).
    synced_inputs_at = models.DateTimeField(null=True, blank=True)
    # What the last successful sync could not push because the zone's rule limit was reached:
    # {"user_ids": [...] (allowlists not enforced), "allow_ranges": n (fingerprint ranges not checked),
    #  "reason": "..."}; empty when everything was pushed.
    left_out = models.JSONField(default=dict, blank=True)
    # Set in the same transaction as every change the rules must follow (certificates.enqueue.request_firewall_sync)
    # and cleared by the sync that read the database after it (compare-and-set on this value): while it is set, a
    # change is committed that no sync has pushed, and beat queues one even if the sync queued with the change was
    # lost (Redis down at the time, a worker killed).
    sync_requested_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"firewall of zone {self.zone_id}"


class UnknownCertificate(models.Model):
    """A certificate in the zone the portal did not issue (made in the dashboard, say), seen by reconciliation."""

    zone_id = models.CharField(max_length=32)
    cloudflare_id = models.CharField(max_length=36)
    status = models.CharField(max_length=32)
    common_name = models.CharField(max_length=255, blank=True, default="")
    fingerprint_sha256 = models.CharField(max_length=64, blank=True, default="")
    expires_on = models.DateTimeField(null=True, blank=True)
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("-last_seen_at",)
        constraints = [
            models.UniqueConstraint(fields=("zone_id", "cloudflare_id"), name="unknown_certificate_unique_per_zone")
        ]

    def __str__(self) -> str:
        return f"{self.common_name or self.cloudflare_id} ({self.status})"


class Zone(models.Model):
    """A Cloudflare zone the portal issues into. Issuance locks its row, so that two requests, from any users,
    cannot both take the zone's last free slot."""

    zone_id = models.CharField(max_length=32, unique=True)
    # The issuer of new certificates: a portal CA, or None for Cloudflare's managed CA. Certificates keep the
    # issuer that signed them, so switching leaves them valid until they expire or are replaced.
    issuer = models.ForeignKey(
        CertificateAuthority, null=True, blank=True, on_delete=models.PROTECT, related_name="zones"
    )
    # Eight uppercase hex digits that start every serial the portal CAs sign for this zone: the edge rule lets a
    # portal CA's certificate through only with it (certificates.authority.serials).
    serial_marker = models.CharField(max_length=8, blank=True, default="")

    def __str__(self) -> str:
        return f"zone {self.zone_id}"


class AccessRequest(models.Model):
    """A user's request to staff: admission to issue certificates (PORTAL_ADMISSION=approval), or room in a full
    zone. Staff decide in the admin; the user sees the request's state on their dashboard."""

    class Kind(models.TextChoices):
        ADMISSION = "admission", "Admission to issue certificates"
        ROOM = "room", "Room in a full zone"

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for staff"
        APPROVED = "approved", "Approved"
        REFUSED = "refused", "Refused"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="access_requests")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    note = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ("-created_at", "-id")
        constraints = [
            # A user waits on at most one request of each kind: asking twice changes nothing.
            models.UniqueConstraint(
                fields=("user", "kind"), condition=models.Q(status="pending"), name="access_request_one_pending"
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} for {self.user} ({self.get_status_display().lower()})"
