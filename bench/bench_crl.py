"""Build time and size of a portal CA's CRL with 1,000 and 10,000 revoked certificates (issue 11).

Two measurements for each size, the median of RUNS builds each:
- end to end: `crl_refresh(authority_id=..., force=True)`, as a revocation's rebuild runs it: lock the CA's row,
  read the revoked certificates from the database, decrypt the CA's key, build and sign the CRL, store it;
- the builder alone: `certificates.authority.pki.build_crl` on entries already in memory.
The rows are made with bulk_create, revoked and unexpired, and signed by a CA made by the service (EC P-256, the
default). The database is PostgreSQL when DATABASE_URL is set (a database of the bench's own on that server,
`bench_crl`, dropped and made again) and SQLite otherwise. Target: 10,000 entries in under 0.2 s, end to end
(django-ca 3.2 takes 0.46 s on the same kind of machine).

Run: DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/bench_crl.py
"""

from __future__ import annotations

import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_issuance import Database
from cryptography import x509
from harness import header, write_result

DATABASE = "bench_crl"
SIZES = (1_000, 10_000)
RUNS = 7
TARGET_SECONDS = 0.2  # 10,000 entries, end to end
DJANGO_CA_SECONDS = 0.46
COMMAND = "DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/bench_crl.py"


def setup_django(database_url: str) -> None:
    """Development settings (as bench/harness.py) on the given database."""
    os.environ.update(
        DJANGO_SETTINGS_MODULE="portal.settings",
        DEBUG="true",
        PORTAL_VAR_DIR=tempfile.mkdtemp(prefix="portal-bench-crl-"),
        DATABASE_URL=database_url,
        CLOUDFLARE_EMULATOR="true",
        EMAIL_CONSOLE="true",
    )
    for name in ("REDIS_URL", "CLOUDFLARE_API_TOKEN", "EMAIL_HOST"):
        os.environ.pop(name, None)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def median_seconds(build: Callable[[], object]) -> float:
    build()  # warm: the first build pays for imports and caches
    times = []
    for _ in range(RUNS):
        began = time.perf_counter()
        build()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def revoked_certificates(count: int):  # type: ignore[no-untyped-def]
    """A CA and `count` of its certificates, revoked and unexpired, owned by 100 users."""
    from datetime import timedelta

    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from certificates import services
    from certificates.models import Certificate
    from certificates.services.authorities import authority_create

    authority = authority_create(
        name=f"CRL bench {count}", algorithm="ec-p256", validity_days=3650, origin=services.Origin(actor=None)
    )
    User = get_user_model()
    owners = User.objects.bulk_create([User(username=f"crl-{count}-{n}") for n in range(100)])
    now = timezone.now()
    Certificate.objects.bulk_create(
        (
            Certificate(
                owner=owners[n % len(owners)],
                name="revoked",
                zone_id="0" * 32,
                authority=authority,
                status=Certificate.Status.REVOKED,
                revoked_at=now - timedelta(minutes=n % 1440),
                csr="bench",
                key_type="ec-p256",
                common_name="bench",
                validity_days=365,
                public_key_sha256=secrets.token_hex(32),
                fingerprint_sha256=secrets.token_hex(32),
                serial_number=secrets.token_hex(18).upper(),  # 36 hex digits, as certificates.authority.serials
                issued_on=now - timedelta(days=1),
                expires_on=now + timedelta(days=364),
            )
            for n in range(count)
        ),
        batch_size=2000,
    )
    return authority


def measure(count: int) -> tuple[str, float]:
    from django.utils import timezone

    from certificates.authority import pki
    from certificates.models import Certificate, CertificateAuthority
    from certificates.services.authorities import authority_signing_key
    from certificates.services.crls import crl_refresh, crl_validity

    authority = revoked_certificates(count)
    end_to_end = median_seconds(lambda: crl_refresh(authority_id=authority.pk, force=True))
    stored = CertificateAuthority.objects.get(pk=authority.pk)
    der = bytes(stored.crl_der)
    listed = len(x509.load_der_x509_crl(der))
    assert listed == count, f"the CRL lists {listed} certificates, not {count}"

    key = authority_signing_key(stored)
    ca_certificate = pki.load_certificate(stored.certificate_pem)
    rows = Certificate.objects.filter(authority=authority).values_list("serial_number", "revoked_at")
    entries = [pki.RevokedEntry(int(serial, 16), revoked_at) for serial, revoked_at in rows]
    now = timezone.now()

    def build() -> object:
        return pki.build_crl(
            authority=ca_certificate,
            key=key,
            revoked=entries,
            number=1,
            this_update=now,
            next_update=now + crl_validity(),
        )

    builder = median_seconds(build)
    per_entry = len(der) / count
    row = (
        f"{count:>8,} {end_to_end:>11.3f} {builder:>9.3f} {end_to_end - builder:>11.3f} "
        f"{len(der) / 1000:>9.1f} {per_entry:>10.1f} {stored.crl_number:>7}"
    )
    return row, end_to_end


def main() -> None:
    load = os.getloadavg()[0]
    given = os.environ.get("DATABASE_URL")
    database = Database(given, Path(tempfile.mkdtemp(prefix="bench-crl-")))
    database.recreate(DATABASE)
    described = database.describe(DATABASE)
    try:
        setup_django(database.url(DATABASE))
        lines = [" revoked end to end s builder s query etc. s    DER kB B / entry  number"]
        results = {}
        for count in SIZES:
            row, results[count] = measure(count)
            print(row, flush=True)
            lines.append(row)
        from django.db import connections

        connections.close_all()
    finally:
        database.drop(DATABASE)
    largest = results[SIZES[-1]]
    met = "met" if largest < TARGET_SECONDS else "NOT met"
    lines += [
        "",
        f"Target (issue 11): {SIZES[-1]:,} revoked in under {TARGET_SECONDS} s end to end: {largest:.3f} s, {met} "
        f"(django-ca 3.2: {DJANGO_CA_SECONDS} s).",
        "",
        f"Median of {RUNS} builds after one warm-up. End to end: crl_refresh(authority_id=..., force=True), which",
        "locks the CA's row, reads its revoked and held certificates, decrypts its key, builds and signs the CRL and",
        'stores it. Builder: pki.build_crl on entries in memory. "query etc." is the difference. Number: the CRL',
        "number after the runs (one per build, warm-up included). CA: EC P-256 made by the service; serials of 36 hex",
        "digits (144 bits, certificates.authority.serials). Certificates made with bulk_create, revoked, unexpired.",
        f"Database: {described}.",
    ]
    loads = f"# load average (1 min) before the run: {load:.2f}\n"
    text = header("Portal CA: CRL build time and size", COMMAND) + loads
    write_result("crl.txt", text + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
