"""The portal's records: certificates (issued through Cloudflare or by a portal CA), API tokens, the audit log."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import F
from django.db.models.fields.json import KeyTransform
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

    # Columns a page, a list or a notice about the CA's certificates never needs, left out when they are read with
    # it (select_related): the encrypted key, the CRL (hundreds of kB at 10,000 revocations) and the PEMs.
    BULK_FIELDS = ("encrypted_key", "crl_der", "certificate_pem", "chain_pem")

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

    # db_index=False here and below: an index in Meta leads with the column and serves every lookup by it, so the
    # foreign key's own index would only slow down writes.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="certificates", db_index=False
    )
    name = models.CharField(max_length=100)
    zone_id = models.CharField(max_length=32)
    # The portal CA that signed it; None for Cloudflare's managed CA (cloudflare_id then names it at Cloudflare).
    authority = models.ForeignKey(
        CertificateAuthority,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="certificates",
        db_index=False,
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
            # The dashboard and quota checks: a user's certificates by status (admission.held_by, the API's count).
            models.Index(fields=("owner", "status"), name="certificate_owner_status"),
            # Admin search and firewall rules look certificates up by fingerprint.
            models.Index(fields=("fingerprint_sha256",), name="certificate_fingerprint"),
            # The CRL of a portal CA (its revoked certificates), a CA's certificates in use (admin, retirement).
            models.Index(fields=("authority", "status"), name="certificate_authority_status"),
            # Every issuance: is this key in the zone already (services.quotas.refuse_known_key)? Without it the
            # check reads every certificate of the zone.
            models.Index(fields=("zone_id", "public_key_sha256"), name="certificate_zone_public_key"),
            # The dashboard's and GET /api/v1/certificates' default page (certificates/listing.py): a user's
            # newest first, read a page at a time from the index. The expiry sorts order by
            # Coalesce(expires_on, ...) and sort a user's rows in memory (hundreds at most): no index for them.
            # Also the issuance rate limit (services.quotas: a user's certificates made since a moment).
            models.Index(fields=("owner", "created_at"), name="certificate_owner_created"),
            # The admin's list, newest first (ORDER BY created_at DESC, id DESC), a page read from the index instead
            # of a sort of the whole table; and its "created" filter (a range of created_at).
            models.Index(fields=("created_at", "id"), name="certificate_created"),
            # The admin's status filter, newest first; and the sweeper's issuing and unconfirmed rows
            # (lifecycle.certificates_mark_stuck, tasks.sweep_stuck: a few rows of one status, by updated_at).
            models.Index(fields=("status", "created_at", "id"), name="certificate_status_created"),
            # The admin's expiry filter (expired, within 7 or 30 days, later): a range of expires_on.
            models.Index(fields=("expires_on",), name="certificate_expires_on"),
            # Workers on usable certificates by expiry: lifecycle.certificates_mark_expired (usable but past
            # expiry: a handful, however many expired ones history holds), lifecycle.expiry_reminders_send (usable,
            # expiring within N days) and the firewall sync's usable certificates (firewall_inputs).
            # It carries zone_id and status, so that the admin overview counts a zone's expiring certificates from
            # the index alone (certificates.services.overview: thousands within 30 days at 50,000).
            models.Index(
                fields=("expires_on",),
                include=("zone_id", "status"),
                condition=models.Q(status__in=("active", "pending_reactivation")),  # USABLE
                name="certificate_usable_expiry",
            ),
            # Polling (lifecycle.certificates_poll): a zone's certificates with a transition pending at Cloudflare,
            # a few among tens of thousands.
            models.Index(
                fields=("zone_id",),
                condition=models.Q(status__in=("pending_revocation", "pending_reactivation")),  # PENDING
                name="certificate_zone_pending",
            ),
            # The zone's room on every dashboard, API policy answer and issuance (admission.zone_used): the managed
            # CA's certificates that hold a slot, counted from the index alone.
            models.Index(
                fields=("zone_id",),
                condition=models.Q(
                    authority__isnull=True,
                    status__in=("issuing", "unconfirmed", "active", "pending_reactivation"),  # HOLDS_A_SLOT
                ),
                name="certificate_zone_slots",
            ),
            # Admin search by serial (exact, certificates.admin.CertificateAdmin.get_search_results); the unique
            # (authority, serial_number) above covers only the portal CAs' rows.
            models.Index(fields=("serial_number",), name="certificate_serial"),
            # Admin search by Cloudflare id; the unique (zone_id, cloudflare_id) leads with the zone.
            models.Index(
                fields=("cloudflare_id",), condition=~models.Q(cloudflare_id=""), name="certificate_cloudflare_id"
            ),
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
        indexes = [
            # The admin's list, newest first (ORDER BY created_at DESC, id DESC): a page read from the index.
            models.Index(fields=("created_at", "id"), name="token_created"),
        ]

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
    # db_index=False: the Meta indexes lead with actor and with certificate.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    certificate = models.ForeignKey(
        Certificate, null=True, blank=True, on_delete=models.PROTECT, related_name="events", db_index=False
    )
    token = models.ForeignKey(ApiToken, null=True, blank=True, on_delete=models.SET_NULL, related_name="events")
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    old_status = models.CharField(max_length=32, blank=True, default="")
    new_status = models.CharField(max_length=32, blank=True, default="")
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("-created_at", "-id")
        indexes = [
            # A certificate's history, newest first (its page, the API); also what PROTECT checks on a delete.
            models.Index(fields=("certificate", "-created_at"), name="audit_certificate_created"),
            # The admin's list, newest first (ORDER BY created_at DESC, id DESC): a page read from the index
            # instead of a sort of every event on disk; and its date filter.
            models.Index(fields=("created_at", "id"), name="audit_created"),
            # The admin's action filter, newest first; and the workers' reads of one action (rotation notices
            # sent, zone issuer changes: services.authorities).
            models.Index(fields=("action", "created_at", "id"), name="audit_action_created"),
            # A user's own events by time: the revocation rate limit (services.revocation, the owner's revocations
            # in the last period); also what SET_NULL updates when a user is deleted.
            models.Index(fields=("actor", "created_at"), name="audit_actor_created"),
            # The networks page's "last changed" (firewall.status._last_allowlist_change): the newest allowlist
            # change of one user, found by detail->'user_id' among allowlist changes only.
            models.Index(
                KeyTransform("user_id", "detail"),
                F("created_at").desc(),
                condition=models.Q(action="allowlist.changed"),  # Action.ALLOWLIST_CHANGED
                name="audit_allowlist_user",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.get_action_display()}"


class AllowlistEntry(models.Model):
    """A network a user's certificates may be used from. A user with no entries may connect from anywhere."""

    # db_index=False: the unique (owner, network) leads with it.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="allowlist", db_index=False
    )
    # Normalized CIDR (ipaddress.ip_network(..., strict=True)), e.g. 192.0.2.0/24 or 2001:db8::/32.
    network = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("network",)
        verbose_name = "allowlist entry"
        verbose_name_plural = "allowlist entries"
        # (owner, network) serves every read by owner: the user's page, the API, the firewall sync.
        constraints = [models.UniqueConstraint(fields=("owner", "network"), name="allowlist_unique_network_per_user")]
        indexes = [
            # The admin's list in network order (certificates.admin.AllowlistEntryAdmin.ordering) and its exact
            # search by network.
            models.Index(fields=("network", "id"), name="allowlist_network"),
        ]

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
        indexes = [
            # The admin's list, the latest seen first (ORDER BY last_seen_at DESC, id DESC).
            models.Index(fields=("last_seen_at", "id"), name="unknown_certificate_last_seen"),
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


class ReconcileSweep(models.Model):
    """Where a zone's reconciliation stands. A sweep reads Cloudflare's listings of the statuses that matter, a page at
    a time, at most RECONCILE_CALLS_PER_PASS calls a pass; the next pass resumes here
    (certificates.services.lifecycle.zone_reconcile). Passes move it by compare-and-set, so two never record the
    same page twice."""

    zone_id = models.CharField(max_length=32, unique=True)
    # When the sweep under way began; None between sweeps (the next pass begins one).
    started_at = models.DateTimeField(null=True, blank=True)
    # The status whose listing the sweep is reading, and the page of it to read next; empty once every listing is
    # read, while the sweep reads one by one the certificates the listings did not show.
    listing = models.CharField(max_length=32, blank=True, default="")
    page = models.PositiveIntegerField(default=1)
    # The listing's total_count on the page read last: a smaller one on a later page means certificates left the
    # listing while it was paged, which moves later ones onto pages already read (shifted).
    listing_total = models.PositiveIntegerField(null=True, blank=True)
    # A listing shrank during the sweep, so it may have missed a certificate: its end fails no unconfirmed issuance.
    shifted = models.BooleanField(default=False)

    def __str__(self) -> str:
        return f"reconciliation of zone {self.zone_id}"


class ReconcileSeen(models.Model):
    """A certificate the sweep under way has accounted for (listed, or read on its own). What a sweep has not seen by
    its end is absent from Cloudflare's listings. Deleted when the sweep ends."""

    sweep = models.ForeignKey(ReconcileSweep, on_delete=models.CASCADE, related_name="seen")
    cloudflare_id = models.CharField(max_length=36)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=("sweep", "cloudflare_id"), name="reconcile_seen_unique_per_sweep")
        ]

    def __str__(self) -> str:
        return self.cloudflare_id


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


class TaskRun(models.Model):
    """What the Celery processes last did with one task (by its Celery name), written by the signal receivers in
    portal/celery.py: when beat last queued it, when a worker last started, finished or failed it, and how often.

    Readiness (portal/health.py) reads from here whether beat and the workers are alive and when polling last
    succeeded; the metrics (portal/metrics.py) export the counts. Kept in the database, not in each process's memory,
    so that the web process sees what the workers did, in other containers too.
    """

    task = models.CharField(max_length=200, unique=True)
    # Written by beat only (not by a web request that queues the task): the scheduler's sign of life.
    last_queued_at = models.DateTimeField(null=True, blank=True)
    last_started_at = models.DateTimeField(null=True, blank=True)
    last_succeeded_at = models.DateTimeField(null=True, blank=True)
    last_failed_at = models.DateTimeField(null=True, blank=True)
    # The exception's class and the start of its message; never shown by /readyz or /metrics.
    last_error = models.CharField(max_length=500, blank=True, default="")
    succeeded = models.PositiveBigIntegerField(default=0)
    failed = models.PositiveBigIntegerField(default=0)
    retried = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return self.task
