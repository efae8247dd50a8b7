"""API tokens: lifetime within the cap, scope, and what the 0003 migration gives tokens made before it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from certificates import services
from certificates.models import ApiToken
from tests.support.accounts import signed_in
from tests.test_settings import start_django


def create(user, **kwargs):
    return services.api_token_create(user=user, name="t", origin=services.Origin(actor=user), **kwargs)


def lifetime_in_days(token: ApiToken) -> float:
    return (token.expires_at - token.created_at).total_seconds() / 86400


def test_a_token_lasts_the_default_days_unless_told(db, alice, settings):
    settings.API_TOKEN_DEFAULT_DAYS = 90

    token, _secret = create(alice)

    assert round(lifetime_in_days(token)) == 90


@pytest.mark.parametrize("days", [1, 365])
def test_a_token_may_last_from_one_day_to_the_cap(db, alice, settings, days):
    settings.API_TOKEN_MAX_DAYS = 365

    token, _secret = create(alice, days=days)

    assert round(lifetime_in_days(token)) == days


@pytest.mark.parametrize("days", [0, -1, 366, 10**9])
def test_a_lifetime_outside_the_cap_is_a_400_that_names_the_cap(db, alice, settings, days):
    settings.API_TOKEN_MAX_DAYS = 365

    with pytest.raises(services.PolicyError) as refused:
        create(alice, days=days)

    assert refused.value.status_code == 400
    assert "from 1 to 365 days" in refused.value.message
    assert not ApiToken.objects.exists()


def test_an_unknown_scope_is_refused(db, alice):
    with pytest.raises(services.PolicyError, match="read-only or read-write"):
        create(alice, scope="admin")
    assert not ApiToken.objects.exists()


def test_a_read_only_token_authenticates_reads_and_refuses_writes(db, alice):
    _token, secret = create(alice, scope=ApiToken.Scope.READ_ONLY)

    assert services.api_token_authenticate(secret, for_write=False) == alice
    with pytest.raises(services.TokenScopeError) as refused:
        services.api_token_authenticate(secret, for_write=True)
    assert refused.value.status_code == 403


def test_an_expired_token_does_not_authenticate(db, alice):
    token, secret = create(alice, days=1)
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now())

    assert services.api_token_authenticate(secret, for_write=False) is None


def test_the_creation_is_audited_with_scope_and_lifetime(db, alice):
    token, secret = create(alice, days=7, scope=ApiToken.Scope.READ_ONLY)

    event = token.events.get()
    assert event.detail == {"name": "t", "scope": "read_only", "days": 7}
    assert secret not in str(event.detail)


def test_start_up_refuses_a_default_longer_than_the_cap(tmp_path):
    result = start_django(tmp_path, DEBUG="true", API_TOKEN_DEFAULT_DAYS="400", API_TOKEN_MAX_DAYS="365")

    assert result.returncode != 0
    assert "API_TOKEN_DEFAULT_DAYS (400) must not exceed API_TOKEN_MAX_DAYS (365)" in result.stderr


BEFORE = ("certificates", "0002_workers_allowlists_firewall")
AFTER = ("certificates", "0003_token_expiry_scope")


@pytest.mark.django_db(transaction=True)
def test_the_migration_gives_older_tokens_the_default_lifetime_from_now_and_keeps_them_read_write(settings):
    settings.API_TOKEN_DEFAULT_DAYS = 45
    executor = MigrationExecutor(connection)
    try:
        executor.migrate([BEFORE])
        old_apps = executor.loader.project_state([BEFORE]).apps
        owner = old_apps.get_model(django_settings.AUTH_USER_MODEL).objects.create(username="old")
        old_apps.get_model("certificates", "ApiToken").objects.create(
            owner=owner,
            name="old",
            token_sha256="0" * 64,
            hint="mtp_abcd",
            created_at=timezone.now() - timedelta(days=400),
        )

        executor = MigrationExecutor(connection)
        executor.migrate([AFTER])
        token = executor.loader.project_state([AFTER]).apps.get_model("certificates", "ApiToken").objects.get()
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())

    from_now = token.expires_at - timezone.now()
    assert timedelta(days=44) < from_now <= timedelta(days=45)  # not locked out at once, despite its age
    assert token.scope == "read_write"


def test_the_admin_lists_scope_and_expiry_and_filters_by_scope(db, alice, charlie):
    create(alice, scope=ApiToken.Scope.READ_ONLY)
    create(alice, scope=ApiToken.Scope.READ_WRITE)
    staff = signed_in(charlie)

    everything = staff.get("/admin/certificates/apitoken/")
    read_write_only = staff.get("/admin/certificates/apitoken/?scope__exact=read_write")

    assert everything.status_code == 200
    page = everything.content.decode()
    assert "column-scope" in page
    assert "column-expires_at" in page
    assert "read-only" in page
    assert [token.scope for token in read_write_only.context["cl"].result_list] == ["read_write"]
