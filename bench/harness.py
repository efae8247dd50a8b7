"""Shared set-up for the benchmarks: a throw-away database and an in-process emulator, with its request log.

Benchmarks count Cloudflare calls from the emulator's log or from count_traffic (and time where time is the
target); their output is committed under bench/results/.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def setup_django(*, keep_database_url: bool = False) -> None:
    """Development settings on a throw-away var/ directory, the emulator and console email, migrated.

    The database is a SQLite file in that directory, unless keep_database_url: then DATABASE_URL stays, and the
    caller has pointed it at a database of the bench's own (bench_pages.py, which needs PostgreSQL at scale).
    """
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    os.environ["DEBUG"] = "true"
    os.environ["PORTAL_VAR_DIR"] = tempfile.mkdtemp(prefix="portal-bench-")
    dropped = ("REDIS_URL", "CLOUDFLARE_API_TOKEN", "EMAIL_HOST", *(() if keep_database_url else ("DATABASE_URL",)))
    for name in dropped:
        os.environ.pop(name, None)
    os.environ["CLOUDFLARE_EMULATOR"] = "true"
    os.environ["EMAIL_CONSOLE"] = "true"
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def use_emulator(**kwargs):  # type: ignore[no-untyped-def]
    """Mount a fresh in-process emulator as the portal's Cloudflare, with a call budget of its own."""
    from certificates import cloudflare_client
    from cloudflare.budget import LocalBudget
    from cloudflare_emulator import Emulator

    emulator = Emulator(**kwargs)
    cloudflare_client.get_emulator = lambda: emulator  # type: ignore[assignment]
    cloudflare_client.get_call_budget = lambda: LocalBudget()  # type: ignore[assignment]
    return emulator


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    sent: int  # request body bytes
    received: int  # response body bytes


def count_traffic() -> list[Call]:
    """Record every call of the portal's Cloudflare clients made from now on, with the sizes of its bodies.

    A response hook on each client's requests.Session, added where get_cloudflare_client mounts the emulator,
    so the count is the client's own view: one entry per HTTP attempt, retries included.
    """
    from cloudflare_emulator import wsgi_transport

    calls: list[Call] = []
    mount = wsgi_transport.mount_wsgi_app

    def record(response, *args, **kwargs):  # type: ignore[no-untyped-def]
        body = response.request.body or b""
        sent = len(body.encode() if isinstance(body, str) else body)
        path = response.request.path_url.split("?")[0]
        calls.append(Call(response.request.method, path, sent, len(response.content)))

    def mount_and_count(session, base_url, app):  # type: ignore[no-untyped-def]
        mount(session, base_url, app)
        session.hooks["response"].append(record)

    wsgi_transport.mount_wsgi_app = mount_and_count  # type: ignore[assignment]
    return calls


def header(title: str, command: str) -> str:
    return (
        f"# {title}\n"
        f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, Python {platform.python_version()}\n"
        f"# command: {command}\n"
    )


def write_result(name: str, text: str) -> None:
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / name).write_text(text)
    print(text)
