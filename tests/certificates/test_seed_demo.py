from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import transaction
from django.db.models import Count

from certificates.models import AllowlistEntry, ApiToken, AuditEvent, Certificate, UnknownCertificate, Zone


def seed(*args: str) -> str:
    out = StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def debug(settings):
    settings.DEBUG = True


def test_it_makes_the_rows_it_is_asked_for_and_their_surroundings(db, debug):
    output = seed("--users", "40", "--certificates", "700", "--heavy-users", "1")

    assert get_user_model().objects.count() == 40
    assert Certificate.objects.count() == 700
    assert AllowlistEntry.objects.exists()
    assert ApiToken.objects.exists()
    assert UnknownCertificate.objects.exists()
    # Every issued certificate has its issuance in the log, as a real one would.
    issued = Certificate.objects.exclude(status__in=[*Certificate.IN_FLIGHT, Certificate.Status.FAILED])
    assert AuditEvent.objects.filter(action=AuditEvent.Action.ISSUED).count() == issued.count()
    assert "40 users, 700 certificates" in output


def test_it_makes_every_status_both_issuers_and_a_heavy_user(db, debug):
    seed("--users", "40", "--certificates", "700", "--heavy-users", "1")

    assert set(Certificate.objects.values_list("status", flat=True)) == set(Certificate.Status.values)
    assert Certificate.objects.filter(authority__isnull=True).exclude(cloudflare_id="").exists()
    assert Certificate.objects.filter(authority__isnull=False).exists()
    heaviest = Certificate.objects.values("owner").annotate(n=Count("id")).order_by("-n").first()
    assert heaviest is not None
    assert heaviest["n"] >= 200


def test_its_rows_agree_with_their_status(db, debug):
    seed("--users", "20", "--certificates", "300")

    unsigned = Certificate.objects.filter(status__in=[*Certificate.IN_FLIGHT, Certificate.Status.FAILED])
    assert unsigned.exists()
    assert not unsigned.exclude(certificate_pem="", fingerprint_sha256="", authority=None).exists()
    signed = Certificate.objects.exclude(pk__in=unsigned)
    assert not signed.filter(expires_on=None).exists()
    assert signed.filter(certificate_pem__startswith="-----BEGIN CERTIFICATE-----").count() == signed.count()
    # A portal CA's serials start with the zone's marker, as the firewall's issuer rule expects.
    marker = Zone.objects.get().serial_marker
    portal = signed.filter(authority__isnull=False)
    assert portal.exists()
    assert not portal.exclude(serial_number__startswith=marker).exists()
    assert not Certificate.objects.filter(status=Certificate.Status.REVOKED, revoked_at=None).exists()


def test_the_same_seed_makes_the_same_rows(db, debug):
    def rows() -> list[tuple[str, str, str]]:
        with transaction.atomic():
            seed("--users", "15", "--certificates", "120", "--seed", "7")
            made = list(
                Certificate.objects.order_by("id").values_list("owner__username", "status", "fingerprint_sha256")
            )
            transaction.set_rollback(True)
        return made

    assert rows() == rows()


def test_it_refuses_without_debug(db, settings):
    settings.DEBUG = False

    with pytest.raises(CommandError, match="DEBUG is off"):
        seed("--users", "2", "--certificates", "2")

    assert not get_user_model().objects.exists()


def test_it_refuses_a_database_with_users(alice, debug):
    with pytest.raises(CommandError, match="already has users"):
        seed("--users", "2", "--certificates", "2")

    assert get_user_model().objects.count() == 1
    assert not Certificate.objects.exists()


def test_force_seeds_anyway(alice, settings):
    settings.DEBUG = False

    seed("--users", "3", "--certificates", "10", "--force")

    assert get_user_model().objects.count() == 4
    assert Certificate.objects.count() == 10


def test_it_refuses_a_seed_already_used(db, debug):
    seed("--users", "2", "--certificates", "2")

    with pytest.raises(CommandError, match="another --seed"):
        seed("--users", "2", "--certificates", "2", "--force")

    assert get_user_model().objects.count() == 2
