"""Issuance through `POST /api/v1/certificates` with real processes (issue 11): the portal CA beside the managed CA.

The server is gunicorn with the repository's gunicorn.conf.py (3 workers x 8 threads, as the image runs it), DEBUG
off. The database is PostgreSQL when DATABASE_URL is set (a database of the bench's own on that server,
`bench_issuance`, dropped and made again) and SQLite otherwise (one writer at a time: several clients meet
"database is locked", counted as errors); REDIS_URL, when set, is the cache, the Celery broker
and the call budget, as in production. Cloudflare is the in-process emulator, named with CLOUDFLARE_EMULATOR=true
(no token): the managed CA's path signs there, in the web process, with no network in between.

Each client is a process with one keep-alive HTTP connection and the bearer token of a user of its own; its CSRs
(EC P-256) are made before the clock starts, since key generation is the client's cost. The per-user limits are
raised through the environment so that one user can issue a whole run: CERTIFICATE_ISSUE_RATE_LIMIT=1000000/h and
CERTIFICATE_MAX_ACTIVE_PER_USER=1000000. Every other check runs as in production.

Cloudflare calls are counted by the emulator: every API request it admits is a hit in the rate-limit window kept
in its state file, shared by all web processes. No Celery worker runs, so the firewall sync each issuance queues
(debounced: one per zone per FIREWALL_SYNC_DEBOUNCE_SECONDS) never runs and calls nothing; the syncs left queued
are counted apart. The managed CA holds at most 100 certificates per zone (Cloudflare's quota, kept by the portal
and the emulator), so its runs are short.

Each mode and client count gets a fresh database (from a migrated template), emulator state and gunicorn.

Run: DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/13 \
     .venv/bin/python bench/bench_issuance.py      (about 3 minutes; writes bench/results/issuance.txt)
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import multiprocessing
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from chaos_stack import Stack
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from harness import header, write_result

DATABASE = "bench_issuance"
WARM_UP = 3  # issuances per client before the clock starts: connections made, code paths warm
RATE_WINDOW = 300.0  # the emulator's rate-limit window: hits older than this leave the count


@dataclass(frozen=True)
class Run:
    # "portal CA", "managed CA", or "read only": with the portal CA, each client reads the certificate it made
    # while warming up (GET /api/v1/certificates/<id>: the token and one query), the stack's own cost, for scale.
    mode: str
    clients: int
    per_client: int  # timed requests of each client
    existing: int = 0  # certificates of other users in the zone before the run (a tenth revoked, in the CRL)

    @property
    def portal_ca(self) -> bool:
        return self.mode != "managed CA"

    @property
    def read_only(self) -> bool:
        return self.mode == "read only"


# The managed CA's runs fit its 100-certificate zone, warm-up included.
RUNS = [
    Run("portal CA", 1, 600),
    Run("portal CA", 8, 150),
    Run("portal CA", 1, 600, existing=100_000),
    Run("managed CA", 1, 90),
    Run("managed CA", 8, 9),
    Run("read only", 1, 600),
]
DJANGO_CA = {1: 43.5, 8: 88.6}  # certificates/s through django-ca 3.2's API (issue 11)
COMMAND = (
    "DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/13 "
    ".venv/bin/python bench/bench_issuance.py"
)

# Run with `manage.py shell -c`, its parameters in BENCH_SET_UP: users with verified addresses and API tokens; for
# the portal CA, a CA made by the service, marked trusted as an upload would, and made the zone's issuer (as
# tests/support/portal_ca.py does); for a full zone, certificates of other users, a tenth of them revoked, and the
# CA's CRL built. Prints the clients' tokens and subjects as JSON on its last line.
SET_UP = """
import json, os, secrets
from datetime import timedelta
from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model
from django.utils import timezone
from certificates import services
from certificates.cloudflare_client import get_zone_id
from certificates.models import Certificate, CertificateAuthority, Zone
from certificates.policy import get_policy
from certificates.services.authorities import authority_create
from certificates.services.crls import crl_refresh

parameters = json.loads(os.environ["BENCH_SET_UP"])
User = get_user_model()
if parameters["portal_ca"]:
    ca = authority_create(name="Bench CA", algorithm="ec-p256", validity_days=3650, origin=services.Origin(actor=None))
    CertificateAuthority.objects.filter(pk=ca.pk).update(status=CertificateAuthority.Status.TRUSTED)
    Zone.objects.update_or_create(zone_id=get_zone_id(), defaults={"issuer": ca})
if parameters["existing"]:
    now = timezone.now()
    owners = User.objects.bulk_create([User(username=f"filler-{n}") for n in range(1000)])
    revoked = parameters["existing"] // 10
    Certificate.objects.bulk_create(
        (
            Certificate(
                owner=owners[n % len(owners)], name="filler", zone_id=get_zone_id(), authority=ca,
                status=Certificate.Status.REVOKED if n < revoked else Certificate.Status.ACTIVE,
                revoked_at=now if n < revoked else None, csr="filler", key_type="ec-p256", common_name="filler",
                validity_days=365, public_key_sha256=secrets.token_hex(32), fingerprint_sha256=secrets.token_hex(32),
                serial_number=secrets.token_hex(18).upper(), issued_on=now, expires_on=now + timedelta(days=365),
            )
            for n in range(parameters["existing"])
        ),
        batch_size=5000,
    )
    crl_refresh(authority_id=ca.pk, force=True)
clients = []
for index in range(parameters["clients"]):
    user = User.objects.create_user(username=f"bench-{index}", email=f"bench-{index}@example.com")
    EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)
    _, token = services.api_token_create(user=user, name="bench", origin=services.Origin(actor=user))
    subject = get_policy().subject_for(user)
    names = [subject.organization, subject.organizational_unit, subject.common_name]
    clients.append({"token": token, "subject": names})
print(json.dumps(clients))
"""


@dataclass
class Outcome:
    run: Run
    seconds: float
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    cloudflare_calls: int = 0
    syncs_queued: int = 0

    @property
    def issued(self) -> int:
        return len(self.latencies)

    def row(self) -> str:
        cuts = statistics.quantiles(self.latencies, n=100)
        per_issuance = self.cloudflare_calls / self.issued if self.issued else float("nan")
        errors = sum(self.errors.values())
        return (
            f"{self.run.mode:<11} {self.run.existing:>7,} {self.run.clients:>7} {self.issued:>6} {errors:>6} "
            f"{self.seconds:>7.2f} {self.issued / self.seconds:>8.1f} {cuts[49] * 1000:>6.1f} {cuts[94] * 1000:>6.1f} "
            f"{self.cloudflare_calls:>8} {per_issuance:>8.2f} {self.syncs_queued:>7}"
        )


# --- the database ---------------------------------------------------------------------------------------------


class Database:
    """A fresh database for each run, copied from a template migrated once: PostgreSQL or a SQLite file."""

    def __init__(self, given: str | None, run_dir: Path) -> None:
        self.given = given
        self.run_dir = run_dir
        self.postgres = bool(given) and urlsplit(given or "").scheme.startswith("postgres")
        if given and not self.postgres:
            raise SystemExit("DATABASE_URL: only PostgreSQL (or nothing, for SQLite) is supported by this bench")

    def url(self, name: str) -> str:
        if self.postgres:
            parts = urlsplit(self.given or "")
            return urlunsplit(parts._replace(path=f"/{name}"))
        return f"sqlite:///{self.run_dir / (name + '.sqlite3')}"

    def describe(self, name: str) -> str:
        if not self.postgres:
            return "SQLite (no DATABASE_URL)"
        import psycopg

        with psycopg.connect(self.given or "", autocommit=True) as connection:
            version = connection.execute("show server_version").fetchone()
        return f"PostgreSQL {version[0] if version else '?'}, database {name} on the DATABASE_URL server"

    def recreate(self, name: str, *, template: str | None = None) -> None:
        self.drop(name)
        if not self.postgres:
            if template is not None:
                shutil.copyfile(self.run_dir / f"{template}.sqlite3", self.run_dir / f"{name}.sqlite3")
            return
        import psycopg
        from psycopg import sql

        create = sql.SQL("create database {}").format(sql.Identifier(name))
        if template is not None:
            create = sql.SQL("{} template {}").format(create, sql.Identifier(template))
        with psycopg.connect(self.given or "", autocommit=True) as connection:
            connection.execute(create)

    def drop(self, name: str) -> None:
        if not self.postgres:
            (self.run_dir / f"{name}.sqlite3").unlink(missing_ok=True)
            return
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.given or "", autocommit=True) as connection:
            connection.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


# --- the portal's processes -----------------------------------------------------------------------------------


class IssuanceStack(Stack):
    """chaos_stack's gunicorn, with production settings but no token: the emulator is asked for by name."""

    def __init__(self, run_dir: Path, *, database_url: str, redis_url: str | None) -> None:
        super().__init__(run_dir, database_url=database_url)
        self.redis_url = redis_url
        self.encryption_key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
        self.set_up_parameters = "{}"

    def portal_env(self) -> dict[str, str]:
        keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")
        env = {name: os.environ[name] for name in keep if name in os.environ}
        env.update(
            DJANGO_SETTINGS_MODULE="portal.settings",
            DEBUG="false",
            SECRET_KEY="bench-issuance-secret-key-" + "x" * 40,
            ALLOWED_HOSTS="127.0.0.1",
            EMAIL_CONSOLE="true",
            CLOUDFLARE_EMULATOR="true",
            CLOUDFLARE_EMULATOR_STATE=str(self.state_file),
            DATABASE_URL=self.database_url,
            PORTAL_VAR_DIR=str(self.run_dir / "var"),
            PORTAL_CA_ENCRYPTION_KEY=self.encryption_key,
            CERTIFICATE_ISSUE_RATE_LIMIT="1000000/h",
            CERTIFICATE_MAX_ACTIVE_PER_USER="1000000",
            GUNICORN_BIND=f"127.0.0.1:{self.web_port}",
            LOG_LEVEL="WARNING",
            BENCH_SET_UP=self.set_up_parameters,
        )
        if self.redis_url:
            env["REDIS_URL"] = self.redis_url
        return env

    def emulator_hits(self) -> int:
        """API requests the emulator admitted within its rate-limit window (all web processes share the file)."""
        if not self.state_file.exists():
            return 0
        state = json.loads(self.state_file.read_text())
        return sum(len(bucket["hits"]) for bucket in state.get("rate_limits", {}).values())

    def syncs_queued(self) -> int:
        """Firewall syncs waiting in the broker for a worker (none runs here)."""
        if self.redis_url:
            import redis

            return int(redis.Redis.from_url(self.redis_url).llen("celery"))
        queue = self.run_dir / "var" / "celery" / "queue"
        return len(list(queue.iterdir())) if queue.exists() else 0


def clear_redis(redis_url: str | None) -> None:
    """The bench's Redis database starts and ends empty: no cached marker or queued sync carries over."""
    if redis_url:
        import redis

        redis.Redis.from_url(redis_url).flushdb()


# --- the clients ----------------------------------------------------------------------------------------------


def make_csrs(subject: list[str], count: int) -> list[str]:
    organization, unit, common_name = subject
    attributes = [
        x509.NameAttribute(oid, value)
        for oid, value in (
            (NameOID.ORGANIZATION_NAME, organization),
            (NameOID.ORGANIZATIONAL_UNIT_NAME, unit),
            (NameOID.COMMON_NAME, common_name),
        )
        if value
    ]
    name = x509.Name(attributes)
    return [
        x509.CertificateSigningRequestBuilder()
        .subject_name(name)
        .sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
        for _ in range(count)
    ]


def client(port: int, token: str, csrs: list[str], read_only: bool, ready, start, results) -> None:  # type: ignore[no-untyped-def]
    """One client: warm up, wait for the start, then issue its CSRs one after the other on one connection (or read,
    as often, the certificate issued last). Answers other than 201 and 200 are counted by status and message,
    warm-up included."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    latencies: list[float] = []
    errors: dict[str, int] = {}

    issued: dict[str, object] = {}

    def call(method: str, path: str, body: str | None, *, timed: bool) -> None:
        began = time.perf_counter()
        connection.request(method, path, body=body, headers=headers)
        answer = connection.getresponse()
        content = answer.read()
        if answer.status not in (200, 201):
            key = f"{answer.status} {content[:120].decode(errors='replace')}"
            errors[key] = errors.get(key, 0) + 1
            return
        if timed:
            latencies.append(time.perf_counter() - began)
        if method == "POST":
            issued.update(json.loads(content))

    def issue(csr: str, *, timed: bool) -> None:
        body = json.dumps({"csr": csr, "validity_days": 30, "name": "bench"})
        call("POST", "/api/v1/certificates", body, timed=timed)

    for csr in csrs[:WARM_UP]:
        issue(csr, timed=False)
    ready.wait()
    start.wait()
    for csr in csrs[WARM_UP:]:
        if read_only:
            call("GET", f"/api/v1/certificates/{issued['id']}", None, timed=True)
        else:
            issue(csr, timed=True)
    results.put((latencies, errors, time.perf_counter()))


def run_clients(
    port: int, users: list[dict[str, object]], spec: Run, *, warmed_up: Callable[[], None]
) -> tuple[float, list[float], dict[str, int]]:
    """Runs the clients; `warmed_up` is called once they all have, before the clock starts."""
    context = multiprocessing.get_context("fork")
    ready = context.Barrier(len(users) + 1)
    start = context.Barrier(len(users) + 1)
    results = context.Queue()
    processes = []
    for user in users:
        csrs = make_csrs(list(user["subject"]), WARM_UP if spec.read_only else WARM_UP + spec.per_client)  # type: ignore[arg-type]
        csrs += [""] * (WARM_UP + spec.per_client - len(csrs))  # a read needs no CSR
        arguments = (port, user["token"], csrs, spec.read_only, ready, start, results)
        process = context.Process(target=client, args=arguments)
        process.start()
        processes.append(process)
    ready.wait(timeout=120)
    warmed_up()
    began = time.perf_counter()
    start.wait()
    latencies: list[float] = []
    errors: dict[str, int] = {}
    ended = began
    for _ in processes:
        client_latencies, client_errors, client_ended = results.get(timeout=600)
        latencies += client_latencies
        for key, count in client_errors.items():
            errors[key] = errors.get(key, 0) + count
        ended = max(ended, client_ended)
    for process in processes:
        process.join(timeout=30)
    return ended - began, latencies, errors


# --- a run ----------------------------------------------------------------------------------------------------


def run(database: Database, run_dir: Path, redis_url: str | None, spec: Run) -> Outcome:
    database.recreate(DATABASE, template=f"{DATABASE}_template")
    clear_redis(redis_url)
    name = f"{spec.mode.split()[0]}-{spec.clients}-{spec.existing}"
    stack = IssuanceStack(run_dir / name, database_url=database.url(DATABASE), redis_url=redis_url)
    stack.run_dir.mkdir(parents=True)
    try:
        parameters = {"portal_ca": spec.portal_ca, "clients": spec.clients, "existing": spec.existing}
        stack.set_up_parameters = json.dumps(parameters)
        printed = stack.manage("shell", "-c", SET_UP)
        users = json.loads(printed.splitlines()[-1])  # the last line: Django's shell may say something first
        stack.start_web()
        hits_before: list[int] = []
        seconds, latencies, errors = run_clients(
            stack.web_port, users, spec, warmed_up=lambda: hits_before.append(stack.emulator_hits())
        )
        if seconds >= RATE_WINDOW:
            raise SystemExit("the run outlasted the emulator's rate-limit window: its Cloudflare count is incomplete")
        outcome = Outcome(spec, seconds, latencies, errors)
        outcome.cloudflare_calls = stack.emulator_hits() - hits_before[0]
        outcome.syncs_queued = stack.syncs_queued()
    finally:
        stack.stop_all()
        clear_redis(redis_url)
    print(outcome.row(), flush=True)
    return outcome


COLUMNS = "mode        in zone clients issued errors seconds  certs/s p50 ms p95 ms CF calls per iss. syncs queued"


def report(outcomes: list[Outcome], *, database: str, redis_url: str | None) -> str:
    lines = [
        COLUMNS,
        *(o.row() for o in outcomes),
        "",
        "Targets (issue 11): the portal CA at least twice django-ca 3.2's API rates, 0 Cloudflare calls per issuance.",
    ]
    for o in outcomes:
        rate = DJANGO_CA.get(o.run.clients)
        if o.run.mode != "portal CA" or rate is None:
            continue
        ours = o.issued / o.seconds
        met = "met" if ours >= 2 * rate and o.cloudflare_calls == 0 else "NOT met"
        zone = f", {o.run.existing:,} certificates in the zone" if o.run.existing else ""
        lines.append(
            f"  {o.run.clients} client{'s' if o.run.clients > 1 else ''}{zone}: {ours:.1f}/s against django-ca's "
            f"{rate}/s (x{ours / rate:.1f}; target {2 * rate:.1f}/s), {o.cloudflare_calls} Cloudflare calls: {met}"
        )
    errors = {key: count for o in outcomes for key, count in o.errors.items()}
    if errors:
        lines += ["", "Errors:", *(f"  {count} x {key}" for key, count in errors.items())]
    lines += [
        "",
        f"Database: {database}. Redis: {'REDIS_URL (cache, broker, call budget)' if redis_url else 'none'}.",
        "Server: gunicorn with gunicorn.conf.py (3 workers x 8 threads), DEBUG off; clients are processes on the same",
        "machine, one keep-alive connection and one user each; CSRs (EC P-256) made before the clock starts.",
        "Per-user limits raised for the bench: CERTIFICATE_ISSUE_RATE_LIMIT=1000000/h, CERTIFICATE_MAX_ACTIVE_PER_USER",
        "=1000000; every other check runs (admission, the user's lock, rate and maximum, the duplicate-key check).",
        '"in zone": certificates of 1,000 other users in the zone before the run, a tenth revoked (in the CRL).',
        '"read only": the client reads the certificate it issued while warming up, GET /api/v1/certificates/<id>',
        "(the token and one query, no issuance): what any authenticated API request costs on this machine.",
        "Cloudflare calls: API requests the in-process emulator admitted during the timed phase. No Celery worker",
        "runs: the firewall syncs the issuances queued (debounced, one per zone per 5 s) stay queued, counted in the",
        "last column; each would cost 1 read and 1 write (bench/results/sync.txt), for any number of issuances.",
        "The managed CA's path signs in the in-process emulator, which loads its CA key and rewrites its state file on",
        "every call (most of that row's time); Cloudflare would take a network round trip instead, and allows 1,200",
        "calls per 5 minutes. Its zone holds 100 certificates (warm-up included), hence the short runs.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["portal", "managed"], help="run one mode only")
    args = parser.parse_args()
    given_database, redis_url = os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL")
    run_dir = Path(tempfile.mkdtemp(prefix="bench-issuance-"))
    database = Database(given_database, run_dir)
    runs = [spec for spec in RUNS if args.only is None or spec.mode.startswith(args.only)]
    load = os.getloadavg()[0]
    outcomes = []
    try:
        database.recreate(f"{DATABASE}_template")
        template = IssuanceStack(
            run_dir / "template", database_url=database.url(f"{DATABASE}_template"), redis_url=None
        )
        template.run_dir.mkdir(parents=True)
        template.manage("migrate", "--noinput")
        print(COLUMNS)
        for spec in runs:
            outcomes.append(run(database, run_dir, redis_url, spec))
    finally:
        database.drop(DATABASE)
        database.drop(f"{DATABASE}_template")
        shutil.rmtree(run_dir, ignore_errors=True)
    title = "Issuance through POST /api/v1/certificates: portal CA and managed CA, 1 and 8 clients"
    loads = f"# load average (1 min) before the run: {load:.2f}, after: {os.getloadavg()[0]:.2f}\n"
    text = header(title, COMMAND) + loads
    write_result("issuance.txt", text + report(outcomes, database=database.describe(DATABASE), redis_url=redis_url))


if __name__ == "__main__":
    main()
