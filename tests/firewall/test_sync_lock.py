"""The per-zone sync lock dies with its holder (issue 9, point 4).

PostgreSQL: a session advisory lock, which the server drops when the holder's connection ends. SQLite: a 60 s
lease, renewed by time as the sync writes. Run the PostgreSQL tests with DATABASE_URL=postgres://...
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from certificates.firewall import sync
from certificates.firewall.sync import SyncBusy, firewall_sync
from certificates.models import FirewallState
from tests.conftest import services_required

ZONE = "0" * 32
ROOT = Path(__file__).resolve().parents[2]


def on_postgresql() -> bool:
    return connection.vendor == "postgresql"


def needs_postgresql() -> None:
    if not on_postgresql():
        if services_required():
            pytest.fail("REQUIRE_SERVICES=1 needs DATABASE_URL=postgres://...")
        pytest.skip("needs PostgreSQL (DATABASE_URL=postgres://...)")


def database_url() -> str:
    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@contextmanager
def held_by_another_process(zone_id: str):
    """Another connection holds the zone's lock: on PostgreSQL its advisory lock, elsewhere the row's lease."""
    if not on_postgresql():
        FirewallState.objects.update_or_create(
            zone_id=zone_id, defaults={"lease_owner": "other", "lease_until": timezone.now() + sync.LEASE}
        )
        yield
        return
    import psycopg

    with psycopg.connect(database_url(), autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", [sync.advisory_lock_key(zone_id)])
        yield


def test_a_held_lock_refuses_a_second_sync(emulator, alice):
    with held_by_another_process(ZONE), pytest.raises(SyncBusy, match="another sync"):
        firewall_sync(zone_id=ZONE)


def test_a_finished_sync_leaves_the_lock_free(emulator, alice):
    firewall_sync(zone_id=ZONE)

    owner = sync._acquire_lease(ZONE)
    sync._release_lease(ZONE, owner)
    assert FirewallState.objects.get(zone_id=ZONE).lease_owner == ""


def test_a_failed_sync_leaves_the_lock_free(emulator, alice, settings):
    settings.PORTAL_API_HOSTNAMES = []
    with pytest.raises(sync.FirewallSyncError):
        firewall_sync(zone_id=ZONE)
    settings.PORTAL_API_HOSTNAMES = ["api.example.com"]

    firewall_sync(zone_id=ZONE)


def test_without_postgresql_a_dead_holders_lease_is_taken_over_after_a_minute(emulator, alice, monkeypatch):
    if on_postgresql():
        pytest.skip("on PostgreSQL the advisory lock decides (test_a_killed_holder_frees_the_lock_at_once)")
    sync._acquire_lease(ZONE)  # a worker that was killed before it could release its lease
    with pytest.raises(SyncBusy):
        firewall_sync(zone_id=ZONE)
    a_minute_later = timezone.now() + timedelta(seconds=61)
    monkeypatch.setattr(timezone, "now", lambda: a_minute_later)

    firewall_sync(zone_id=ZONE)

    assert FirewallState.objects.get(zone_id=ZONE).last_synced_at == a_minute_later


def test_a_sync_keeps_its_lease_before_each_write(emulator, alice, monkeypatch):
    kept: list[str] = []
    real_keep = sync._Lease.keep
    monkeypatch.setattr(sync._Lease, "keep", lambda lease: kept.append(lease.owner) or real_keep(lease))

    firewall_sync(zone_id=ZONE)  # the first sync creates the entrypoint: one write

    assert len(kept) == 1
    assert kept[0], "the lease knows its owner token"


class FakeNow:
    def __init__(self) -> None:
        self.value = timezone.now()

    def __call__(self):
        return self.value


def lease_updates(queries) -> int:
    return sum(1 for q in queries if q["sql"].startswith("UPDATE") and "lease_until" in q["sql"])


@pytest.mark.parametrize("seconds_per_write", [0.1, 7])
def test_a_long_sync_renews_its_lease_by_time_not_per_write(db, monkeypatch, seconds_per_write):
    from django.db import connection as default_connection
    from django.test.utils import CaptureQueriesContext

    now = FakeNow()
    monkeypatch.setattr(timezone, "now", now)
    lease = sync._Lease(zone_id=ZONE, renewed_at=now())
    lease.owner = sync._acquire_lease(ZONE)
    writes = 600

    with CaptureQueriesContext(default_connection) as queries:
        for _ in range(writes):
            lease.keep()
            # Every write starts with two thirds of the lease left, even in a sync far longer than the lease.
            lease_until = FirewallState.objects.get(zone_id=ZONE).lease_until
            assert lease_until - now() >= sync.LEASE - sync.RENEW_AFTER
            now.value += timedelta(seconds=seconds_per_write)

    renewals = lease_updates(queries.captured_queries)
    elapsed = timedelta(seconds=writes * seconds_per_write)
    # At most one renewal per RENEW_AFTER: 60 s of writes, 2 renewals; 70 minutes, about 200; never one per write.
    assert 0 < renewals <= elapsed / sync.RENEW_AFTER


def test_a_sync_that_lost_its_lease_stops_at_its_next_write(db, monkeypatch):
    if on_postgresql():
        pytest.skip("on PostgreSQL the advisory lock decides (test_on_postgresql_a_sync_that_lost_its_connection...)")
    now = FakeNow()
    monkeypatch.setattr(timezone, "now", now)
    lease = sync._Lease(zone_id=ZONE, renewed_at=now())
    lease.owner = sync._acquire_lease(ZONE)
    now.value += sync.LEASE + timedelta(seconds=1)  # one write hung past the lease
    sync._acquire_lease(ZONE)  # and another sync took over

    with pytest.raises(SyncBusy):
        lease.keep()


def test_on_postgresql_a_sync_that_lost_its_connection_lost_its_lock(transactional_db, emulator, alice):
    needs_postgresql()
    owner = sync._acquire_lease(ZONE)
    connection.close()  # Django reconnects on the next query, with a new session that holds nothing

    with pytest.raises(SyncBusy, match="lost its lease"):
        sync._renew_lease(ZONE, owner)
    sync._release_lease(ZONE, owner)


HOLDER = textwrap.dedent(
    """
    import sys, time
    import django
    django.setup()
    from certificates.firewall.sync import _acquire_lease
    _acquire_lease(sys.argv[1])
    print("held", flush=True)
    time.sleep(600)
    """
)


def test_on_postgresql_a_killed_holder_frees_the_lock_at_once(transactional_db):
    needs_postgresql()
    environ = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "DATABASE_URL": database_url(),
        "DEBUG": "true",
    }
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, ZONE], cwd=ROOT, env=environ, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(SyncBusy):
            sync._acquire_lease(ZONE)

        holder.kill()  # kill -9: no finally, no release
        holder.wait()
        killed_at = time.monotonic()
        owner = None
        while owner is None and time.monotonic() - killed_at < 5:
            try:
                owner = sync._acquire_lease(ZONE)
            except SyncBusy:
                time.sleep(0.05)
    finally:
        holder.kill()
        holder.wait()

    assert owner is not None, "the lock outlived its killed holder"
    assert time.monotonic() - killed_at < 1
    sync._release_lease(ZONE, owner)
