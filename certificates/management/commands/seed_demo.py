"""python manage.py seed_demo --users 10000 --certificates 50000 [--heavy-users 10] [--seed 1] [--force]

Fills an empty development database with demo data at the scale the benchmarks need (bench/bench_pages.py).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from allauth.account.models import EmailAddress
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone

from certificates.authority import pki, serials
from certificates.cloudflare_client import get_zone_id
from certificates.models import (
    AllowlistEntry,
    ApiToken,
    AuditEvent,
    Certificate,
    CertificateAuthority,
    OwnerSerialTag,
    UnknownCertificate,
    Zone,
)
from certificates.policy import get_policy
from certificates.services.audit import Origin, audit_event
from certificates.services.authorities import authority_create, authority_signing_key, zone_with_marker
from certificates.services.signing import crl_url

BATCH = 2000
HEAVY_CERTIFICATES = (200, 400)  # certificates of each heavy user: the dashboard's "whatever the number" case
# The mix of statuses (weights). Every status also appears at least once, however small the run.
STATUS_WEIGHTS = {
    Certificate.Status.ACTIVE: 600,
    Certificate.Status.REVOKED: 200,
    Certificate.Status.EXPIRED: 120,
    Certificate.Status.PENDING_REVOCATION: 20,
    Certificate.Status.PENDING_REACTIVATION: 5,
    Certificate.Status.FAILED: 45,
    Certificate.Status.ISSUING: 5,
    Certificate.Status.UNCONFIRMED: 5,
}
MANAGED_SHARE = 0.1  # certificates of Cloudflare's managed CA; the rest are signed by the portal CA
VALIDITY_WEIGHTS = {365: 6, 180: 2, 90: 1, 30: 1}
DOWNLOADED_SHARE = 0.2  # issued certificates with a download event
ALLOWLIST_SHARE = 0.4  # users with networks, 1 to 9 each: about 2 networks a user, as measured in issue 12
TOKEN_SHARES = (0.3, 0.05)  # users with at least one token, with a second one
HISTORY = timedelta(days=730)  # how far back accounts and certificates go


@dataclass(frozen=True)
class Specimens:
    """One real CSR and one real certificate (EC P-256, signed by the demo CA), reused by every row: the rows have
    the width of real ones without signing thousands of certificates."""

    csr: str
    certificate: str


class Command(BaseCommand):
    help = (
        "Fill an empty development database with demo data: users (verified addresses, unusable passwords: set one "
        "with `manage.py changepassword`), certificates in every status from a portal CA and Cloudflare's managed "
        "CA, networks, API tokens, audit events and unknown certificates, in the proportions measured in issue 12 "
        "(10,000 users / 50,000 certificates: about 20,000 networks and 94,000 events). A few heavy users hold "
        "200 to 400 certificates each. Every certificate carries the same real CSR and PEM (one certificate signed "
        "by the demo CA), with fingerprints and serials of its own that do not match it: nothing is signed per row "
        "and no Cloudflare call is made. The same --seed gives the same rows (the CA's key excepted). Refuses to "
        "run without DEBUG or on a database that has users, unless --force: never run it against production."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--users", type=int, default=100, help="users to make (default 100)")
        parser.add_argument("--certificates", type=int, default=500, help="certificates to make (default 500)")
        parser.add_argument(
            "--heavy-users", type=int, default=None, help="users with 200 to 400 certificates (default: users/1000)"
        )
        parser.add_argument("--seed", type=int, default=1, help="random seed: the same seed gives the same data")
        parser.add_argument(
            "--force", action="store_true", help="run even with DEBUG off or on a database that already has users"
        )

    def handle(
        self,
        *args: Any,
        users: int,
        certificates: int,
        heavy_users: int | None,
        seed: int,
        force: bool,
        **options: Any,
    ) -> None:
        heavy = max(1, users // 1000) if heavy_users is None else heavy_users
        self._refuse_unless_safe(force=force)
        self._check_sizes(users=users, certificates=certificates, heavy=heavy)
        if get_user_model().objects.filter(username__startswith=_prefix(seed)).exists():
            raise CommandError(f"Users named {_prefix(seed)}* exist already: give another --seed.")
        with transaction.atomic():
            counts = Seeder(seed=seed, heavy=heavy).run(users=users, certificates=certificates)
        self.stdout.write(", ".join(f"{number:,} {what}" for what, number in counts.items()) + ".")

    def _refuse_unless_safe(self, *, force: bool) -> None:
        if force:
            return
        if not settings.DEBUG:
            raise CommandError("DEBUG is off: this may be a production database. Pass --force if it is not.")
        if get_user_model().objects.exists():
            raise CommandError("The database already has users. Seed an empty database, or pass --force to add to it.")

    @staticmethod
    def _check_sizes(*, users: int, certificates: int, heavy: int) -> None:
        if users < 1 or certificates < 0 or heavy < 0:
            raise CommandError("--users must be at least 1; --certificates and --heavy-users at least 0.")
        if heavy > users:
            raise CommandError("--heavy-users cannot exceed --users.")


def _prefix(seed: int) -> str:
    return f"demo{seed}-"


class Seeder:
    """Builds the rows in memory from one random generator and writes each table with bulk_create."""

    def __init__(self, *, seed: int, heavy: int) -> None:
        self.rng = random.Random(seed)
        self.prefix = _prefix(seed)
        self.heavy = heavy
        self.now = timezone.now()
        self.zone_id = get_zone_id()

    def run(self, *, users: int, certificates: int) -> dict[str, int]:
        people = self._users(users)
        authority, zone = self._authority()
        specimens = _specimens(authority)
        tags = self._serial_tags(people)
        rows = self._certificates(people, certificates, authority, zone, tags, specimens)
        networks = self._networks(people)
        tokens = self._tokens(people)
        events = self._events(rows, tokens, networks)
        unknown = self._unknown(max(3, users // 500))
        return {
            "users": len(people),
            "certificates": len(rows),
            "networks": len(networks),
            "API tokens": len(tokens),
            "audit events": events,
            "unknown certificates": unknown,
        }

    def _when(self, within: timedelta) -> datetime:
        """A moment in the last `within`, to the second."""
        return self.now - timedelta(seconds=self.rng.randrange(max(1, int(within.total_seconds()))))

    def _hex(self, digits: int) -> str:
        return f"{self.rng.getrandbits(digits * 4):0{digits}x}"

    def _users(self, count: int) -> list[User]:
        model = get_user_model()
        unusable = make_password(None)  # nobody signs in as a demo user until given a password
        people = [
            model(
                username=f"{self.prefix}{n:05d}",
                email=f"{self.prefix}{n:05d}@example.com",
                password=unusable,
                date_joined=self._when(HISTORY),
            )
            for n in range(count)
        ]
        model.objects.bulk_create(people, batch_size=BATCH)
        addresses = (EmailAddress(user=u, email=u.email, verified=True, primary=True) for u in people)
        EmailAddress.objects.bulk_create(addresses, batch_size=BATCH)
        return people

    def _authority(self) -> tuple[CertificateAuthority, Zone]:
        """The zone's portal CA (a demo CA, trusted as an upload would make it, unless the zone has one)."""
        zone = zone_with_marker(self.zone_id)
        if zone.issuer is None:
            authority = authority_create(name="Demo CA", algorithm="ec-p256", validity_days=3650, origin=Origin(None))
            CertificateAuthority.objects.filter(pk=authority.pk).update(status=CertificateAuthority.Status.TRUSTED)
            Zone.objects.filter(pk=zone.pk).update(issuer=authority)
            zone.refresh_from_db()
        assert zone.issuer is not None
        return zone.issuer, zone

    def _serial_tags(self, people: Sequence[User]) -> dict[int, str]:
        tags: dict[int, str] = {}
        taken = set(OwnerSerialTag.objects.values_list("tag", flat=True))
        for user in people:
            tag = self._hex(8).upper()
            while tag in taken:
                tag = self._hex(8).upper()
            taken.add(tag)
            tags[user.pk] = tag
        OwnerSerialTag.objects.bulk_create(
            (OwnerSerialTag(user_id=pk, tag=tag) for pk, tag in tags.items()), batch_size=BATCH
        )
        return tags

    def _owners(self, people: Sequence[User], count: int) -> Iterator[User]:
        """Owners for `count` certificates: each heavy user 200 to 400 (fewer when the run is small), the rest spread
        at random over the other users."""
        heavy, light = people[: self.heavy], people[self.heavy :] or people
        left = count
        for user in heavy:
            share = min(self.rng.randint(*HEAVY_CERTIFICATES), left // 2)
            left -= share
            yield from (user for _ in range(share))
        yield from (self.rng.choice(light) for _ in range(left))

    def _certificates(
        self,
        people: Sequence[User],
        count: int,
        authority: CertificateAuthority,
        zone: Zone,
        tags: dict[int, str],
        specimens: Specimens,
    ) -> list[Certificate]:
        statuses = list(STATUS_WEIGHTS)
        weights = list(STATUS_WEIGHTS.values())
        common_name_prefix = get_policy().common_name_prefix
        rows = []
        for n, owner in enumerate(self._owners(people, count)):
            status = statuses[n] if n < len(statuses) else self.rng.choices(statuses, weights)[0]
            # A portal CA signs within the request, so rows in flight or failed are always the managed CA's.
            unsigned = status in Certificate.IN_FLIGHT or status == Certificate.Status.FAILED
            managed = unsigned or self.rng.random() < MANAGED_SHARE
            row = Certificate(
                owner=owner,
                name=f"{'managed' if managed else 'service'}-{n}",
                zone_id=self.zone_id,
                authority=None if managed else authority,
                status=status,
                csr=specimens.csr,
                public_key_sha256=self._hex(64),
                key_type="ec-p256",
                common_name=f"{common_name_prefix}{owner.pk}",
                validity_days=self.rng.choices(list(VALIDITY_WEIGHTS), list(VALIDITY_WEIGHTS.values()))[0],
            )
            self._dates(row)
            if not unsigned:
                self._issued(row, managed, zone.serial_marker + tags[owner.pk], specimens)
            rows.append(row)
        Certificate.objects.bulk_create(rows, batch_size=BATCH)
        return rows

    def _dates(self, row: Certificate) -> None:
        """Issued, expiring and revoked dates that agree with the row's status."""
        validity = timedelta(days=row.validity_days)
        if row.status in Certificate.IN_FLIGHT:
            row.created_at = self._when(timedelta(minutes=30))
            row.attempts = 1 if row.status == Certificate.Status.UNCONFIRMED else 0
            row.last_attempt_at = row.created_at
        elif row.status == Certificate.Status.FAILED:
            row.created_at = self._when(HISTORY)
            row.last_error = "Cloudflare refused the request (seeded)."
        elif row.status == Certificate.Status.EXPIRED:
            row.expires_on = self._when(HISTORY - validity)
            row.issued_on = row.expires_on - validity
        else:  # still valid: issued within the validity period (some expire within days: the expiry filters)
            row.issued_on = self._when(validity - timedelta(hours=1))
            row.expires_on = row.issued_on + validity
        if row.issued_on is not None:
            row.created_at = row.issued_on
        if row.status == Certificate.Status.REVOKED:
            row.revoked_at = row.created_at + (self.now - row.created_at) * self.rng.random()
        row.updated_at = row.revoked_at or row.created_at

    def _issued(self, row: Certificate, managed: bool, owner_prefix: str, specimens: Specimens) -> None:
        row.certificate_pem = specimens.certificate
        row.fingerprint_sha256 = self._hex(64)
        if managed:
            row.cloudflare_id = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
            row.serial_number = self._hex(40)
        else:
            row.serial_number = owner_prefix + self._hex(20).upper()

    def _networks(self, people: Sequence[User]) -> list[AllowlistEntry]:
        entries = []
        for index, user in enumerate(people):
            if self.rng.random() >= ALLOWLIST_SHARE:
                continue
            for j in range(self.rng.randint(1, 9)):
                network = (
                    f"2001:db8:{index:x}:{j:x}::/64"
                    if j % 4 == 3
                    else f"10.{index // 256 % 256}.{index % 256}.{j * 16}/28"
                )
                entries.append(AllowlistEntry(owner=user, network=network, created_at=self._when(HISTORY)))
        AllowlistEntry.objects.bulk_create(entries, batch_size=BATCH)
        return entries

    def _tokens(self, people: Sequence[User]) -> list[ApiToken]:
        tokens = []
        for user in people:
            draw = self.rng.random()
            for _ in range(sum(draw < share for share in TOKEN_SHARES)):
                created = self._when(HISTORY)
                tokens.append(
                    ApiToken(
                        owner=user,
                        name="deploy script",
                        token_sha256=self._hex(64),  # of no token anyone holds: seeded tokens open nothing
                        hint=ApiToken.PREFIX + self._hex(4),
                        created_at=created,
                        expires_at=created + timedelta(days=365),
                        last_used_at=created + (self.now - created) * self.rng.random(),
                        scope=self.rng.choice(ApiToken.Scope.values),
                    )
                )
        ApiToken.objects.bulk_create(tokens, batch_size=BATCH)
        return tokens

    def _events(
        self, rows: Sequence[Certificate], tokens: Sequence[ApiToken], networks: Sequence[AllowlistEntry]
    ) -> int:
        events = [event for row in rows for event in self._history(row)]
        for token in tokens:
            event = audit_event(AuditEvent.Action.TOKEN_CREATED, Origin(token.owner), token=token)
            event.created_at = token.created_at
            events.append(event)
        for owner in {entry.owner for entry in networks}:
            event = audit_event(AuditEvent.Action.ALLOWLIST_CHANGED, Origin(owner), detail={"seeded": True})
            event.created_at = self._when(HISTORY)
            events.append(event)
        AuditEvent.objects.bulk_create(events, batch_size=BATCH)
        return len(events)

    def _history(self, row: Certificate) -> Iterator[AuditEvent]:
        """The events a certificate in this status would have: issued, downloaded, revoked, expired."""
        owner, system, action = Origin(row.owner), Origin(None), AuditEvent.Action
        first = {
            Certificate.Status.FAILED: action.ISSUE_FAILED,
            Certificate.Status.UNCONFIRMED: action.ISSUE_UNCONFIRMED,
            Certificate.Status.ISSUING: None,
        }.get(Certificate.Status(row.status), action.ISSUED)
        steps: list[tuple[str, Origin, datetime]] = []
        if first is not None:
            steps.append((first, owner, row.created_at))
        if row.certificate_pem and self.rng.random() < DOWNLOADED_SHARE:
            steps.append((action.DOWNLOADED, owner, row.created_at + timedelta(minutes=1)))
        if row.status in (Certificate.Status.REVOKED, *Certificate.PENDING):
            steps.append((action.REVOCATION_REQUESTED, owner, row.revoked_at or row.updated_at))
        if row.status == Certificate.Status.REVOKED:
            steps.append((action.REVOKED, system, row.updated_at + timedelta(seconds=40)))
        if row.status == Certificate.Status.PENDING_REACTIVATION:
            steps.append((action.REACTIVATION_REQUESTED, Origin(None), row.updated_at + timedelta(minutes=5)))
        if row.status == Certificate.Status.EXPIRED and row.expires_on is not None:
            steps.append((action.EXPIRED, system, row.expires_on))
        for what, origin, when in steps:
            event = audit_event(what, origin, certificate=row, new=row.status)
            event.created_at = when
            yield event

    def _unknown(self, count: int) -> int:
        unknown = [
            UnknownCertificate(
                zone_id=self.zone_id,
                cloudflare_id=str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
                status="active",
                common_name=f"made-in-dashboard-{n}",
                fingerprint_sha256=self._hex(64),
                expires_on=self.now + timedelta(days=self.rng.randint(1, 365)),
            )
            for n in range(count)
        ]
        UnknownCertificate.objects.bulk_create(unknown)
        return count


def _specimens(authority: CertificateAuthority) -> Specimens:
    """A real CSR, and the client certificate the demo CA signs for it (once: every row reuses both)."""
    key = ec.generate_private_key(ec.SECP256R1())
    policy = get_policy()
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, f"{policy.common_name_prefix}0"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, policy.organization),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, policy.organizational_unit),
        ]
    )
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    serial = serials.new_serial("10000000", "00000000")
    profile = pki.ClientProfile(subject=subject, serial=serial, validity_days=365, crl_url=crl_url(authority))
    signed = pki.sign_client_certificate(
        authority=pki.load_certificate(authority.certificate_pem),
        key=authority_signing_key(authority),
        public_key=key.public_key(),
        profile=profile,
        now=timezone.now(),
    )
    return Specimens(csr=csr.public_bytes(serialization.Encoding.PEM).decode(), certificate=pki.pem(signed))
