"""Zone capacity is an admission decision: who may issue (open, email domain, staff approval), a zone-wide lock
on the last free slot, and a way forward for a user at a limit (requests to staff, with a queue in the admin)."""

from __future__ import annotations

import json
import threading
import time

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from certificates import services
from certificates.models import AccessRequest, Certificate
from tests.conftest import make_user
from tests.support.accounts import signed_in
from tests.support.pki import policy_csr


def issue(user) -> Certificate:
    return services.certificate_issue(
        user=user, csr=policy_csr(user), validity_days=365, name="box", origin=services.Origin(actor=user)
    )


def post_issue(client: Client, user):
    body = {"csr": policy_csr(user), "validity_days": 365, "name": "box"}
    return client.post("/api/v1/certificates", json.dumps(body), content_type="application/json")


# -- the zone's last slot -----------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_issuances_by_different_users_never_overshoot_the_zone(emulator, settings, monkeypatch):
    from django.db import connection

    if connection.vendor == "sqlite":
        # SQLite's in-memory test database locks whole tables across threads; CI runs this on PostgreSQL.
        pytest.skip("needs a database with row-level locking (DATABASE_URL=postgres://...)")
    settings.CLOUDFLARE_ZONE_CAPACITY = 3
    users = [make_user(f"user{n}") for n in range(6)]
    csrs = {user.pk: policy_csr(user) for user in users}
    # Widen the window between the capacity check and the new row, as a slow database would: without a zone-wide
    # lock every request passes the check before any row exists.
    create = Certificate.objects.create
    monkeypatch.setattr(Certificate.objects, "create", lambda **kw: (time.sleep(0.3), create(**kw))[1])
    start = threading.Barrier(len(users))
    outcomes: list[str] = []

    def request(user) -> None:
        try:
            start.wait()
            services.certificate_issue(
                user=user, csr=csrs[user.pk], validity_days=365, name="box", origin=services.Origin(actor=user)
            )
            outcomes.append("issued")
        except services.QuotaError:
            outcomes.append("full")
        finally:
            connection.close()

    threads = [threading.Thread(target=request, args=(user,)) for user in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["full"] * 3 + ["issued"] * 3
    assert Certificate.objects.filter(status__in=Certificate.HOLDS_A_SLOT).count() == 3


@pytest.mark.django_db(transaction=True)  # staff are emailed after the request commits
def test_a_full_zone_tells_the_user_how_to_ask_for_room(emulator, settings, alice, bob, charlie):
    settings.CLOUDFLARE_ZONE_CAPACITY = 1
    issue(alice)
    client = signed_in(bob)

    refused = post_issue(client, bob)
    page = client.get(reverse("certificates:dashboard"))

    assert refused.status_code == 409
    assert "Ask staff for room on your dashboard" in refused.json()["detail"]
    assert b"Ask staff for room" in page.content
    assert b'room for <strong data-testid="zone-room">0</strong> more' in page.content

    client.post(reverse("certificates:access_request"), {"kind": "room"})
    client.post(reverse("certificates:access_request"), {"kind": "room"})  # a second click changes nothing

    request = AccessRequest.objects.get(user=bob)
    assert (request.kind, request.status) == (AccessRequest.Kind.ROOM, AccessRequest.Status.PENDING)
    assert [message.to for message in mail.outbox] == [[charlie.email]]
    assert "/admin/certificates/accessrequest/" in mail.outbox[0].body
    assert b"You asked staff for room" in client.get(reverse("certificates:dashboard")).content


def test_a_user_at_their_own_maximum_is_told_to_revoke_one(emulator, settings, alice):
    settings.CERTIFICATE_MAX_ACTIVE_PER_USER = 1
    issue(alice)
    client = signed_in(alice)

    refused = post_issue(client, alice)

    assert refused.status_code == 409
    assert "Revoke one you no longer use on your dashboard" in refused.json()["detail"]
    assert b'data-testid="user-full"' in client.get(reverse("certificates:dashboard")).content


def test_the_policy_shows_the_users_maximum_against_the_zones_room(emulator, settings, alice, bob):
    settings.CLOUDFLARE_ZONE_CAPACITY = 10
    issue(alice)
    issue(bob)

    policy = signed_in(alice).get("/api/v1/csr-policy").json()

    assert (policy["active_certificates"], policy["max_active_certificates"]) == (1, 5)
    assert (policy["zone_room"], policy["zone_capacity"]) == (8, 10)
    assert policy["admission"] == {"policy": "open", "admitted": True, "detail": ""}


# -- admission: email domain ------------------------------------------------------------------------------------------


@pytest.fixture
def domain_admission(settings):
    settings.PORTAL_ADMISSION = "email_domain"
    settings.PORTAL_ADMISSION_EMAIL_DOMAINS = ["example.com"]


def test_sign_up_takes_only_addresses_at_the_admitted_domains(db, domain_admission):
    client = Client()
    form = {"password1": "a long enough passphrase", "password2": "a long enough passphrase"}

    refused = client.post(reverse("account_signup"), {"email": "mallory@evil.example", **form})
    taken = client.post(reverse("account_signup"), {"email": "erin@example.com", **form})

    assert refused.status_code == 200
    assert b"This portal is for addresses at example.com." in refused.content
    assert taken.status_code == 302


def test_an_account_without_a_verified_address_at_the_domain_cannot_issue(emulator, domain_admission, db):
    from allauth.account.models import EmailAddress

    mallory = make_user("mallory")  # made before the policy: mallory@example.com, verified
    EmailAddress.objects.filter(user=mallory).update(email="mallory@evil.example")

    refused = post_issue(signed_in_as_email(mallory, "mallory@evil.example"), mallory)

    assert refused.status_code == 403
    assert "verified email address at example.com" in refused.json()["detail"]
    assert not Certificate.objects.exists()


def signed_in_as_email(user, email: str) -> Client:
    user.email = email
    user.save()
    return signed_in(user)


def test_an_account_with_a_verified_address_at_the_domain_can(emulator, domain_admission, alice):
    assert post_issue(signed_in(alice), alice).status_code == 201


# -- admission: staff approval --------------------------------------------------------------------------------------


@pytest.fixture
def approval(settings):
    settings.PORTAL_ADMISSION = "approval"


def sign_up(email: str) -> Client:
    from allauth.account.models import EmailAddress

    client = Client()
    passphrase = "a long enough passphrase"
    client.post(reverse("account_signup"), {"email": email, "password1": passphrase, "password2": passphrase})
    EmailAddress.objects.filter(email=email).update(verified=True)
    client.post(reverse("account_login"), {"login": email, "password": passphrase})
    return client


@pytest.mark.django_db(transaction=True)  # emails go after commit
def test_a_new_account_waits_in_the_staff_queue_until_approved(emulator, approval, charlie):
    client = sign_up("erin@example.com")
    erin = AccessRequest.objects.get().user

    waiting = post_issue(client, erin)
    assert waiting.status_code == 403
    assert "waiting for approval by staff" in waiting.json()["detail"]
    assert b"waiting for approval by staff" in client.get(reverse("certificates:new")).content
    assert [charlie.email] in [message.to for message in mail.outbox]

    staff = signed_in(charlie)
    queue = staff.get(reverse("admin:certificates_accessrequest_changelist"))
    assert b"erin@example.com" in queue.content
    staff.post(
        reverse("admin:certificates_accessrequest_changelist"),
        {"action": "approve_selected", "_selected_action": [AccessRequest.objects.get().pk]},
    )

    assert post_issue(client, erin).status_code == 201
    assert mail.outbox[-1].to == ["erin@example.com"]
    assert "may now issue certificates" in mail.outbox[-1].body


def test_a_refused_account_may_ask_again_with_a_note(emulator, approval, charlie):
    client = sign_up("erin@example.com")
    first = AccessRequest.objects.get()
    services.access_request_decide(request=first, approve=False, origin=services.Origin(actor=charlie))

    page = client.get(reverse("certificates:dashboard"))
    assert b"Ask for approval" in page.content
    client.post(reverse("certificates:access_request"), {"kind": "admission", "note": "payments team, build box"})

    again = AccessRequest.objects.filter(status=AccessRequest.Status.PENDING).get()
    assert again.note == "payments team, build box"
    assert again.pk != first.pk


def test_a_pending_account_cannot_stack_requests_and_a_decision_is_made_once(emulator, approval, charlie):
    client = sign_up("erin@example.com")
    client.post(reverse("certificates:access_request"), {"kind": "admission"})
    request = AccessRequest.objects.get()

    assert services.access_request_decide(request=request, approve=True, origin=services.Origin(actor=charlie))
    assert not services.access_request_decide(request=request, approve=False, origin=services.Origin(actor=charlie))
    request.refresh_from_db()
    assert (request.status, request.decided_by) == (AccessRequest.Status.APPROVED, charlie)


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"kind": "superuser"}, b"Unknown kind of request"),
        ({"kind": "room"}, b"The zone has room"),
        ({"kind": "admission"}, b"Your account may issue certificates already"),
        ({"kind": "room", "note": "x" * 501}, b"longer than 500 characters"),
        ({"kind": "room", "note": "bell\x07"}, b"control characters"),
    ],
)
def test_bad_requests_change_nothing(emulator, settings, alice, bob, form, message):
    settings.CLOUDFLARE_ZONE_CAPACITY = 1
    if form["kind"] == "room" and "note" not in form:
        settings.CLOUDFLARE_ZONE_CAPACITY = 2  # room left: nothing to ask for
    issue(bob)
    client = signed_in(alice)

    response = client.post(reverse("certificates:access_request"), form, follow=True)

    assert message in response.content
    assert not AccessRequest.objects.exists()


def test_staff_are_admitted_whatever_the_policy(emulator, approval, charlie):
    assert issue(charlie).status == Certificate.Status.ACTIVE


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        ({"PORTAL_ADMISSION": "invite"}, "PORTAL_ADMISSION must be open, email_domain or approval"),
        ({"PORTAL_ADMISSION": "email_domain"}, "PORTAL_ADMISSION_EMAIL_DOMAINS is required"),
    ],
)
def test_an_unusable_admission_setting_stops_start_up(tmp_path, environment, message):
    from tests.test_settings import start_django

    result = start_django(tmp_path, DEBUG="true", **environment)

    assert result.returncode != 0
    assert message in result.stderr
