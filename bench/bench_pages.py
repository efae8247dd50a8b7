"""Pages, API and admin lists at 10,000 users and 50,000 certificates, and the SQL share of an issuance (issue 12).

One command, on a fresh clone:

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/bench_pages.py

It makes a database of its own, `bench_pages`, on the DATABASE_URL server (dropped first if it exists, and at the
end: never the database DATABASE_URL names, whose data it did not make), migrates it, seeds it with
`manage.py seed_demo` (10,000 users, 50,000 certificates in every status, about 20,000 networks and 94,000 audit
events), runs ANALYZE as autovacuum would, then requests each page in-process with Django's test Client:
- as a light user (a few certificates) and as the heaviest user (hundreds): the dashboard with each filter and
  sort, its second page (the cursor), a certificate's page, networks, tokens, the new-certificate page; the API
  (bearer token) list with filters, its second page through `next_cursor`, and the other GET endpoints;
- as staff (password and TOTP code through the sign-in form, so the two-factor middleware lets the session in):
  the admin's lists, a deep page, searches and filters;
- /healthz and the signed-in home page, the baselines.
For each: SQL queries (CaptureQueriesContext, one request), response bytes, and the median time of RUNS requests
after WARM_UP, as a ratio to /healthz and to the home page of the same run. Then it issues certificates through
`POST /api/v1/certificates`, with the seeded portal CA (no Cloudflare call) and with Cloudflare's managed CA (the
in-process emulator), and reports the time spent in SQL over the whole request's time.

Per-user limits are raised through the environment so that one user can issue a whole run (as in
bench_issuance.py), and CLOUDFLARE_ZONE_CAPACITY so that the managed CA's seeded certificates leave room; every
other check runs. Settings are the development ones (DEBUG on, local-memory cache, no Redis, Celery's filesystem
broker for the firewall syncs issuances queue). Writes bench/results/pages.txt; takes a few minutes (the
result says how long).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import ROOT, header, setup_django, use_emulator, write_result

DATABASE = "bench_pages"
USERS, CERTIFICATES = 10_000, 50_000
WARM_UP, RUNS = 2, 9
ISSUANCES = 20  # timed issuances of each issuer, after WARM_UP
USER_TARGET, ADMIN_TARGET, SQL_SHARE_TARGET = 3.0, 10.0, 0.10
COMMAND = "DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/bench_pages.py"
LIMITS = {
    "CERTIFICATE_ISSUE_RATE_LIMIT": "1000000/h",
    "CERTIFICATE_MAX_ACTIVE_PER_USER": "1000000",
    "CLOUDFLARE_ZONE_CAPACITY": "1000000",
}
USER, ADMIN, BASE, INFO = "user", "admin", "base", "info"  # which target a row counts against


@dataclass(frozen=True)
class Page:
    kind: str  # USER, ADMIN, BASE or INFO (measured, no target)
    name: str
    who: str
    url: str


@dataclass(frozen=True)
class Measured:
    page: Page
    queries: int
    size: int
    median: float  # seconds


# --- the database ---------------------------------------------------------------------------------------------


def bench_database_url(given: str | None) -> str:
    """The URL of the bench's own database on the server DATABASE_URL names."""
    if not given or not urlsplit(given).scheme.startswith("postgres"):
        raise SystemExit("DATABASE_URL must name a PostgreSQL server: postgres://user@host:port/any-database")
    return urlunsplit(urlsplit(given)._replace(path=f"/{DATABASE}"))


def recreate(given: str, *, create: bool) -> None:
    import psycopg
    from psycopg import sql

    # Connected to the database DATABASE_URL names, unless that is the bench's own (it cannot drop itself).
    if urlsplit(given).path.strip("/") == DATABASE:
        given = urlunsplit(urlsplit(given)._replace(path="/postgres"))
    with psycopg.connect(given, autocommit=True) as connection:
        connection.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(DATABASE)))
        if create:
            connection.execute(sql.SQL("create database {}").format(sql.Identifier(DATABASE)))


def seed(users: int, certificates: int) -> tuple[float, str]:
    from io import StringIO

    from django.core.management import call_command
    from django.db import connection

    out = StringIO()
    start = time.perf_counter()
    call_command("seed_demo", users=users, certificates=certificates, seed=1, stdout=out)
    seconds = time.perf_counter() - start
    with connection.cursor() as cursor:
        # What autovacuum would have done by the time anyone looks: statistics, and the visibility map that lets
        # index-only scans skip the table.
        cursor.execute("vacuum analyze")
    return seconds, out.getvalue().strip()


# --- who asks -------------------------------------------------------------------------------------------------


@dataclass
class Visitors:
    anonymous: Any
    light: Any
    heavy: Any
    staff: Any
    light_token: str
    heavy_token: str
    light_user: Any
    heavy_user: Any


def visitors() -> Visitors:
    """The lightest user holding a few certificates, the heaviest user, and a staff member signed in with TOTP."""
    from django.db.models import Count
    from django.test import Client

    from certificates import services
    from certificates.models import Certificate
    from tests.support.accounts import signed_in

    by_owner = Certificate.objects.values("owner").annotate(n=Count("id"))
    heavy = _user(by_owner.order_by("-n", "owner").first())
    light = _user(by_owner.filter(n__gte=3).order_by("n", "owner").first())
    clients = []
    for user in (light, heavy):
        client = Client()
        client.force_login(user)
        clients.append(client)
    tokens = [
        services.api_token_create(user=user, name="bench", origin=services.Origin(actor=user))[1]
        for user in (light, heavy)
    ]
    return Visitors(Client(), *clients, signed_in(_staff()), *tokens, light, heavy)


def _user(row: dict[str, Any] | None) -> Any:
    from django.contrib.auth import get_user_model

    assert row is not None, "the seeded database has no certificates"
    return get_user_model().objects.get(pk=row["owner"])


def _staff() -> Any:
    from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret

    from tests.conftest import make_user

    user = make_user("bench-staff", staff=True)
    TOTP.activate(user, generate_totp_secret())
    return user


# --- what is asked --------------------------------------------------------------------------------------------


def user_pages(who: str, user: Any) -> Iterator[Page]:
    from certificates import listing
    from certificates.models import Certificate

    yield Page(USER, "dashboard (current)", who, "/certificates/")
    for status in ("all", "revoked", "expired"):
        yield Page(USER, f"dashboard status={status}", who, f"/certificates/?status={status}")
    yield Page(USER, "dashboard sort=expires_on", who, "/certificates/?sort=expires_on")
    first = listing.certificates_page(owner=user, status=listing.CURRENT)
    if first.next_cursor:
        yield Page(USER, "dashboard page 2 (cursor)", who, "/certificates/?" + urlencode({"cursor": first.next_cursor}))
    certificate = Certificate.objects.filter(owner=user).exclude(certificate_pem="").order_by("-created_at").first()
    assert certificate is not None
    yield Page(USER, "certificate detail", who, f"/certificates/{certificate.pk}/")
    yield Page(USER, "certificate.pem", who, f"/certificates/{certificate.pk}/certificate.pem")
    yield Page(USER, "networks", who, "/allowlist/")
    yield Page(USER, "tokens", who, "/tokens/")
    yield Page(USER, "new certificate", who, "/certificates/new/")


def api_pages(who: str, user: Any, next_cursor: str | None) -> Iterator[Page]:
    from certificates.models import Certificate

    base = "/api/v1/certificates"
    yield Page(USER, "GET certificates", who, base)
    for query in ("status=active", "status=revoked", "sort=expires_on", "limit=200"):
        yield Page(USER, f"GET certificates?{query}", who, f"{base}?{query}")
    if next_cursor:
        yield Page(USER, "GET certificates page 2", who, f"{base}?" + urlencode({"cursor": next_cursor}))
    certificate = Certificate.objects.filter(owner=user).order_by("-created_at").first()
    assert certificate is not None
    yield Page(USER, "GET certificates/<id>", who, f"{base}/{certificate.pk}")
    yield Page(USER, "GET csr-policy", who, "/api/v1/csr-policy")
    yield Page(USER, "GET allowlist", who, "/api/v1/allowlist")


def admin_pages(heavy: Any) -> Iterator[Page]:
    from certificates.models import AuditEvent, Certificate

    certificates = "/admin/certificates/certificate/"
    sample = Certificate.objects.filter(owner=heavy, authority__isnull=False).exclude(serial_number="").first()
    assert sample is not None
    yield Page(ADMIN, "admin index", "staff", "/admin/")
    yield Page(ADMIN, "certificates page 1", "staff", certificates)
    deep = _deep_page(Certificate.objects.count())
    yield Page(ADMIN, f"certificates page {deep}", "staff", f"{certificates}?p={deep}")
    yield Page(ADMIN, "search fingerprint", "staff", f"{certificates}?q={sample.fingerprint_sha256}")
    yield Page(ADMIN, "search serial", "staff", f"{certificates}?q={sample.serial_number}")
    yield Page(ADMIN, "search email prefix", "staff", f"{certificates}?q={heavy.email.split('@')[0][:-1]}")
    yield Page(ADMIN, "filter status=revoked", "staff", f"{certificates}?status__exact=revoked")
    yield Page(ADMIN, "filter expiry=30d", "staff", f"{certificates}?expiry=30d")
    yield Page(ADMIN, "filter expiry=expired", "staff", f"{certificates}?expiry=expired")
    yield Page(ADMIN, "audit events", "staff", "/admin/certificates/auditevent/")
    deep = _deep_page(AuditEvent.objects.count())
    yield Page(ADMIN, f"audit events page {deep}", "staff", f"/admin/certificates/auditevent/?p={deep}")
    yield Page(
        ADMIN, "audit action=revoked", "staff", "/admin/certificates/auditevent/?action__exact=certificate.revoked"
    )
    yield Page(ADMIN, "unknown certificates", "staff", "/admin/certificates/unknowncertificate/")
    yield Page(ADMIN, "API tokens", "staff", "/admin/certificates/apitoken/")
    yield Page(ADMIN, "allowlist entries", "staff", "/admin/certificates/allowlistentry/")
    yield Page(ADMIN, "users", "staff", "/admin/auth/user/")
    # Compiles the zone's whole rule set to show the plan: a staff page, but no list; measured, no target.
    yield Page(INFO, "staff firewall page", "staff", "/staff/firewall/")


def _deep_page(rows: int) -> int:
    """Four fifths of the way through an admin list of 100 rows a page (page 400 of 500 for 50,000 rows)."""
    return max(1, rows // 100 * 4 // 5)


# --- measuring ------------------------------------------------------------------------------------------------


Request = tuple[Page, Callable[[], Any]]


def measure(requests: list[Request], runs: int) -> list[Measured]:
    """Warm-up rounds, one counted request per page, then `runs` timed rounds over every page in turn: a change in
    the machine's load during the run falls on all pages alike instead of on whichever was measured then."""
    for _ in range(WARM_UP):
        for page, get in requests:
            response = get()
            assert response.status_code == 200, (page, response.status_code, response.content[:300])
    counted = [count(get) for _, get in requests]
    times: list[list[float]] = [[] for _ in requests]
    for _ in range(runs):
        for index, (_, get) in enumerate(requests):
            start = time.perf_counter()
            get()
            times[index].append(time.perf_counter() - start)
    return [
        Measured(page, queries, size, statistics.median(spent))
        for (page, _), (queries, size), spent in zip(requests, counted, times, strict=True)
    ]


def count(get: Callable[[], Any]) -> tuple[int, int]:
    """The SQL queries and response bytes of one request."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    # DEBUG keeps every query in a bounded log that each request clears when it starts: empty it first, or the
    # capture's starting position would lie past the end of what the request leaves.
    connection.queries_log.clear()
    with CaptureQueriesContext(connection) as queries:
        response = get()
    return len(queries), len(response.content)


def measure_all(people: Visitors, runs: int) -> list[Measured]:
    clients = {"anonymous": people.anonymous, "light": people.light, "heavy": people.heavy, "staff": people.staff}
    bearer = {"light": people.light_token, "heavy": people.heavy_token}
    pages = [
        Page(BASE, "/healthz", "anonymous", "/healthz"),
        Page(BASE, "home, signed in", "light", "/"),
        *user_pages("light", people.light_user),
        *user_pages("heavy", people.heavy_user),
        *api_pages("light", people.light_user, None),
        *api_pages("heavy", people.heavy_user, _api_cursor(people.heavy, people.heavy_token)),
        *admin_pages(people.heavy_user),
    ]
    requests: list[Request] = []
    for page in pages:
        headers = {"HTTP_AUTHORIZATION": f"Bearer {bearer[page.who]}"} if page.url.startswith("/api/") else {}
        client = clients[page.who]
        requests.append((page, lambda c=client, u=page.url, h=headers: c.get(u, **h)))
    return measure(requests, runs)


def _api_cursor(client: Any, token: str) -> str | None:
    response = client.get("/api/v1/certificates", HTTP_AUTHORIZATION=f"Bearer {token}")
    cursor: str | None = response.json()["next_cursor"]
    return cursor


# --- issuance -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Issuance:
    issuer: str
    seconds: list[float]  # each timed request's
    statements: list[list[tuple[str, float]]]  # each timed request's SQL statements and their times

    @property
    def sql_seconds(self) -> list[float]:
        return [sum(spent for _, spent in request) for request in self.statements]

    @property
    def share(self) -> float:
        return sum(self.sql_seconds) / sum(self.seconds)

    def costliest(self, count: int) -> list[tuple[str, float]]:
        """The statements that took the most time, by their first words, with their mean time a request."""
        totals: dict[str, float] = {}
        for request in self.statements:
            for sql, spent in request:
                shape = " ".join(sql.split())[:90]
                totals[shape] = totals.get(shape, 0.0) + spent
        ranked = sorted(totals.items(), key=lambda item: -item[1])[:count]
        return [(shape, total / len(self.statements)) for shape, total in ranked]


@contextmanager
def sql_timer(statements: list[tuple[str, float]]) -> Iterator[None]:
    """Record every statement run meanwhile, and every COMMIT, with its time (the driver's round trip included)."""
    from django.db import connection

    def timed(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            statements.append((sql, time.perf_counter() - start))

    # A transaction's COMMIT (its WAL flush) is database time too, but goes through no execute wrapper.
    commit = connection._commit

    def timed_commit() -> None:
        start = time.perf_counter()
        try:
            commit()
        finally:
            statements.append(("COMMIT", time.perf_counter() - start))

    connection._commit = timed_commit  # type: ignore[method-assign]
    try:
        with connection.execute_wrapper(timed):
            yield
    finally:
        del connection._commit  # the class's method again


def issue(issuer: str, runs: int) -> Issuance:
    """Issue WARM_UP + runs certificates through the API as a fresh user with a token; time each request."""
    from django.test import Client

    from certificates import services
    from tests.conftest import make_user
    from tests.support.pki import policy_csr

    user = make_user(f"bench-issuer-{issuer.split()[0]}")
    token = services.api_token_create(user=user, name="bench", origin=services.Origin(actor=user))[1]
    csrs = [policy_csr(user) for _ in range(WARM_UP + runs)]
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    seconds, statements = [], []
    for n, csr in enumerate(csrs):
        request: list[tuple[str, float]] = []
        start = time.perf_counter()
        with sql_timer(request):
            body = {"csr": csr, "validity_days": 365, "name": f"bench-{n}"}
            response = client.post("/api/v1/certificates", body, content_type="application/json")
        elapsed = time.perf_counter() - start
        assert response.status_code == 201, response.content[:300]
        if n >= WARM_UP:
            seconds.append(elapsed)
            statements.append(request)
    return Issuance(issuer, seconds, statements)


def issuances(runs: int) -> list[Issuance]:
    from certificates.cloudflare_client import get_zone_id
    from certificates.models import Zone

    portal = issue("portal CA", runs)
    # The managed CA: the zone without a portal CA issuer, Cloudflare an in-process emulator of its own.
    Zone.objects.filter(zone_id=get_zone_id()).update(issuer=None)
    use_emulator()
    managed = issue("managed CA (emulator)", runs)
    return [portal, managed]


# --- the report -----------------------------------------------------------------------------------------------


def machine(load_before: float) -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("show server_version")
        version = cursor.fetchone()[0]
        # The floor under every statement's time: a query that does nothing, there and back.
        round_trips = []
        for _ in range(200):
            start = time.perf_counter()
            cursor.execute("select 1")
            cursor.fetchone()
            round_trips.append(time.perf_counter() - start)
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor() or "?",
    )
    cores = os.cpu_count() or 1
    busy = (
        f"# the machine was busy (load above its {cores} cores): times are inflated, SQL's most (each round trip "
        "waits for a core), and ratios are noisier than on a quiet machine\n"
        if max(load_before, os.getloadavg()[0]) > cores
        else ""
    )
    return (
        f"# machine: {cpu}, {cores} cores; PostgreSQL {version} (database {DATABASE} on the DATABASE_URL "
        f"server, `select 1` there and back {statistics.median(round_trips) * 1000:.2f} ms, the median of 200); "
        f"load average (1 min) before: {load_before:.2f}, after: {os.getloadavg()[0]:.2f}\n{busy}"
    )


def table(results: list[Measured]) -> list[str]:
    healthz, home = results[0].median, results[1].median
    lines = [
        f"{'target':<6} {'who':<9} {'page':<32} {'queries':>7} {'bytes':>8} {'ms':>8} {'x healthz':>9} {'x home':>7}"
    ]
    for m in results:
        ratio = m.median / home
        bound = {USER: USER_TARGET, ADMIN: ADMIN_TARGET}.get(m.page.kind)
        verdict = "" if bound is None else ("ok" if ratio <= bound else f"OVER {bound:g}x")
        lines.append(
            f"{m.page.kind:<6} {m.page.who:<9} {m.page.name:<32} {m.queries:>7} {m.size:>8,} {m.median * 1000:>8.1f} "
            f"{m.median / healthz:>9.1f} {ratio:>7.2f} {verdict}"
        )
    return lines


def verdicts(results: list[Measured], issued: list[Issuance]) -> list[str]:
    home = results[1].median
    lines = ["", "Targets (issue 12):"]
    for kind, bound, what in (
        (USER, USER_TARGET, "every user-facing page and API list, light and heavy user"),
        (ADMIN, ADMIN_TARGET, "admin lists, search and filters"),
    ):
        rows = [m for m in results if m.page.kind == kind]
        over = [f"{m.page.who} {m.page.name} ({m.median / home:.1f}x)" for m in rows if m.median / home > bound]
        worst = max(rows, key=lambda m: m.median)
        verdict = "PASS" if not over else "FAIL: " + "; ".join(over)
        lines.append(
            f"  {what} at most {bound:g}x the signed-in home page: {verdict} "
            f"(slowest {worst.page.who} {worst.page.name}, {worst.median / home:.2f}x)"
        )
    for run in issued:
        verdict = "PASS" if run.share < SQL_SHARE_TARGET else "FAIL"
        lines.append(
            f"  issuance, {run.issuer}: SQL {run.share:.1%} of its time (target under {SQL_SHARE_TARGET:.0%}): "
            f"{verdict}; median {statistics.median(run.seconds) * 1000:.1f} ms a request, "
            f"{statistics.median(run.sql_seconds) * 1000:.1f} ms in SQL, "
            f"{statistics.median(len(request) for request in run.statements):.0f} statements "
            f"({len(run.seconds)} issuances); the costliest, mean a request:"
        )
        lines.extend(f"      {spent * 1000:6.2f} ms  {shape}" for shape, spent in run.costliest(4))
    lines.append(poll_verdict())
    return lines


def poll_verdict() -> str:
    """From bench/results/poll.txt (bench/bench_poll.py): the most queries a page of 50 took in a finishing pass."""
    import math
    import re

    path = ROOT / "bench" / "results" / "poll.txt"
    worst, largest = 0.0, 0
    for line in path.read_text().splitlines():
        found = re.match(r"P=(\d+)\s+finished .*queries=(\d+)", line)
        if found:
            pending, queries = int(found[1]), int(found[2])
            worst, largest = max(worst, queries / math.ceil(pending / 50)), max(largest, pending)
    verdict = "PASS" if 0 < worst <= 10 else "FAIL"
    return (
        f"  polling, at most 10 queries a page of 50: {verdict} by bench/results/poll.txt (bench/bench_poll.py: "
        f"at most {worst:.1f} queries a page, passes of up to {largest:,} finished revocations; not rerun here)"
    )


def notes(seeded: str, seed_seconds: float, args: argparse.Namespace, started: float) -> list[str]:
    return [
        "",
        f"The whole run, seeding included, took {time.perf_counter() - started:.0f} s.",
        f"Data: manage.py seed_demo --users {args.users} --certificates {args.certificates} --seed 1, "
        f"{seed_seconds:.0f} s: {seeded}",
        "light: the user with the fewest certificates among those with at least 3; heavy: the user with the most.",
        f"Pages: {WARM_UP} warm-up rounds over every page, one request each counted (queries, bytes), then {args.runs}",
        "timed rounds over every page in turn (a change of load falls on all pages alike); the median of each page.",
        "In-process (Django's test Client, no HTTP server), DEBUG on, local-memory cache; API requests with a bearer",
        "token, pages with a session; staff signed in with password and TOTP code. Ratios are to the medians of",
        "/healthz and of the light user's home page in this run. Issuance: POST /api/v1/certificates as a user of its",
        "own; SQL time is every statement's and COMMIT's time (driver round trip included) over the request's time.",
        "The managed CA signs in the in-process emulator (no network), so its share is larger than with Cloudflare's",
        "round trip. Per-user limits and the zone capacity raised through the environment for the run: "
        + ", ".join(f"{k}={v}" for k, v in LIMITS.items())
        + ".",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=USERS)
    parser.add_argument("--certificates", type=int, default=CERTIFICATES)
    parser.add_argument("--runs", type=int, default=RUNS, help="timed requests of each page (the median is kept)")
    args = parser.parse_args()
    given = os.environ.get("DATABASE_URL")
    os.environ["DATABASE_URL"] = bench_database_url(given)
    os.environ.update(LIMITS)
    load, started = os.getloadavg()[0], time.perf_counter()
    recreate(given or "", create=True)
    try:
        setup_django(keep_database_url=True)
        from django.conf import settings

        settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]  # the test Client's host, as in tests
        seed_seconds, seeded = seed(args.users, args.certificates)
        print(seeded, flush=True)
        results = measure_all(visitors(), args.runs)
        issued = issuances(ISSUANCES)
        text = header("Pages, API and admin lists at scale; the SQL share of an issuance", COMMAND) + machine(load)
        lines = table(results) + verdicts(results, issued) + notes(seeded, seed_seconds, args, started)
        text += "\n".join(lines) + "\n"
    finally:
        from django.db import connections

        connections.close_all()
        recreate(given or "", create=False)
    write_result("pages.txt", text)


if __name__ == "__main__":
    main()
