"""The certificate pages as people use them: expiry shown only while it matters, renew as replace-then-revoke,
history in words with one date format, staff's revocation reason told to the owner, and the quota said up front."""

from __future__ import annotations

import datetime as dt
import html
import re

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from certificates import services
from certificates.models import AuditEvent, Certificate
from certificates.services.audit import audit
from certificates.services.notifications import certificates_notify_owners
from certificates.templatetags.certificate_pages import when
from tests.support.pki import policy_csr
from tests.support.portal_ca import trusted_portal_ca

DATE = re.compile(r'<time datetime="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ">\d{4}-\d\d-\d\d \d\d:\d\d UTC</time>')


def issue(user, name: str = "build server") -> Certificate:
    return services.certificate_issue(
        user=user, csr=policy_csr(user), validity_days=365, name=name, origin=services.Origin(actor=user)
    )


@pytest.fixture
def issued(emulator, alice) -> Certificate:
    return issue(alice)


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def page_text(response) -> str:
    return html.unescape(response.content.decode())


def detail(user, certificate: Certificate):
    return logged_in(user).get(reverse("certificates:detail", args=[certificate.pk]))


# --- expiry: days left and the warning only while the certificate is in use ---


def test_a_revoked_certificate_shows_no_days_left_and_no_renew(issued, alice):
    Certificate.objects.filter(pk=issued.pk).update(status=Certificate.Status.REVOKED, revoked_at=timezone.now())

    page = detail(alice, issued)
    listing = logged_in(alice).get(reverse("certificates:dashboard") + "?status=revoked")

    assert "days left" not in page_text(page)
    assert 'data-testid="renew"' not in page_text(page)
    assert 'data-testid="revoked-at"' in page_text(page)
    assert str(issued.pk) in page_text(listing)
    assert "days left" not in page_text(listing)


def test_an_active_certificate_shows_its_days_left_and_offers_renew(issued, alice):
    text = page_text(detail(alice, issued))

    assert re.search(r"\((364|365) days left\)", text)
    assert 'data-testid="renew"' in text


def test_a_certificate_expiring_within_the_reminder_window_is_flagged_on_both_pages(issued, alice, settings):
    settings.CERTIFICATE_EXPIRY_REMINDER_DAYS = [30, 7]
    later = issue(alice, "far away")
    soon = timezone.now() + dt.timedelta(days=10, hours=1)
    Certificate.objects.filter(pk=issued.pk).update(expires_on=soon)

    dashboard = page_text(logged_in(alice).get(reverse("certificates:dashboard")))
    warning = re.search(r'data-testid="expiry-warning">(.*?)</div>', dashboard, re.S).group(1)

    assert "build server" in warning
    assert "(10 days left)" in warning
    assert f"?renew={issued.pk}" in warning
    assert "far away" not in warning
    assert 'data-testid="expiry-warning"' in page_text(detail(alice, issued))
    assert 'data-testid="expiry-warning"' not in page_text(detail(alice, later))


def test_a_revoked_certificate_in_the_window_is_not_flagged(issued, alice):
    Certificate.objects.filter(pk=issued.pk).update(
        status=Certificate.Status.REVOKED, expires_on=timezone.now() + dt.timedelta(days=3)
    )

    assert 'data-testid="expiry-warning"' not in page_text(logged_in(alice).get(reverse("certificates:dashboard")))
    assert 'data-testid="expiry-warning"' not in page_text(detail(alice, issued))


# --- renew: a replacement first, the old one revoked only on confirmation ---


def test_renew_makes_a_replacement_then_asks_before_revoking_the_old_one(issued, alice):
    client = logged_in(alice)
    new_page = client.get(reverse("certificates:new") + f"?renew={issued.pk}")
    revoke_url = reverse("certificates:revoke", args=[issued.pk])

    assert new_page.context["renewed"] == issued
    assert f'data-replaces-revoke-url="{revoke_url}"' in page_text(new_page)
    assert 'data-testid="replace-old"' in page_text(new_page)

    replacement = issue(alice, "build server")  # what the page's POST to the API does
    confirmation = client.get(f"{revoke_url}?replacement={replacement.pk}")

    assert confirmation.context["replacement"] == replacement
    assert f'name="replacement" value="{replacement.pk}"' in page_text(confirmation)
    assert Certificate.objects.get(pk=issued.pk).status == Certificate.Status.ACTIVE  # nothing yet

    response = client.post(revoke_url, {"replacement": str(replacement.pk)})

    assert response["Location"] == reverse("certificates:detail", args=[replacement.pk])
    assert Certificate.objects.get(pk=issued.pk).status == Certificate.Status.PENDING_REVOCATION
    assert Certificate.objects.get(pk=replacement.pk).status == Certificate.Status.ACTIVE
    event = AuditEvent.objects.get(certificate=issued, action=AuditEvent.Action.REVOCATION_REQUESTED)
    assert event.detail == {"reason": "replaced by “build server”"}


def test_renew_of_an_expired_certificate_has_nothing_to_revoke(issued, alice):
    Certificate.objects.filter(pk=issued.pk).update(status=Certificate.Status.EXPIRED)

    page = logged_in(alice).get(reverse("certificates:new") + f"?renew={issued.pk}")

    assert page.context["name_suggestion"] == "build server"
    assert "data-replaces-revoke-url" not in page_text(page)


def test_renew_is_not_offered_for_a_revoked_certificate(issued, alice):
    Certificate.objects.filter(pk=issued.pk).update(status=Certificate.Status.REVOKED)

    page = logged_in(alice).get(reverse("certificates:new") + f"?renew={issued.pk}")

    assert page.context["renewed"] is None
    assert "data-replaces-revoke-url" not in page_text(page)


def test_another_users_certificate_is_never_named_as_the_replacement(issued, alice, bob):
    theirs = issue(bob, "bobs box")
    client = logged_in(alice)
    revoke_url = reverse("certificates:revoke", args=[issued.pk])

    assert "bobs box" not in page_text(client.get(f"{revoke_url}?replacement={theirs.pk}"))
    response = client.post(revoke_url, {"replacement": str(theirs.pk)})

    assert response["Location"] == reverse("certificates:detail", args=[issued.pk])
    event = AuditEvent.objects.get(certificate=issued, action=AuditEvent.Action.REVOCATION_REQUESTED)
    assert event.detail == {"reason": "revoked by owner"}


@pytest.mark.parametrize("value", ["99999999999999999999999", "-1", "1e3", "²"])
def test_ids_that_are_not_row_ids_are_ignored_not_an_error(issued, alice, value):
    client = logged_in(alice)
    revoke_url = reverse("certificates:revoke", args=[issued.pk])

    assert client.get(reverse("certificates:new"), {"renew": value}).context["renewed"] is None
    assert client.get(revoke_url, {"replacement": value}).context["replacement"] is None


# --- history: what happened in words, one date format ---


def test_the_history_names_each_download_and_status_in_words(issued, alice):
    for file_format in ("key", "pkcs12", "zip", "certificate_pem"):
        services.certificate_record_download(
            certificate=issued, file_format=file_format, origin=services.Origin(actor=alice)
        )
    services.certificate_revoke(certificate=issued, origin=services.Origin(actor=alice), reason="revoked by owner")

    text = page_text(detail(alice, issued))
    history = text[text.index('data-testid="history"') :]

    for label in (
        "Private key saved from the browser",
        "PKCS#12 file downloaded",
        "Zip of key, certificate and PKCS#12 downloaded",
        "Certificate (PEM) downloaded",
        "(Active → Pending revocation)",
    ):
        assert label in history
    assert "Certificate downloaded" not in history
    assert "pending_revocation" not in history.split("</table>")[0].replace('data-status="', "")


def test_every_date_on_the_detail_page_is_utc_in_one_format(issued, alice):
    text = detail(alice, issued).content.decode()
    times = re.findall(r"<time[^>]*>[^<]*</time>", text)

    assert len(times) >= 3  # issued, expires, the history's event
    assert all(DATE.fullmatch(t) for t in times), times


def test_the_date_filter_turns_any_zone_into_utc():
    moment = dt.datetime(2030, 1, 2, 5, 4, 59, tzinfo=dt.timezone(dt.timedelta(hours=2)))

    assert str(when(moment)) == '<time datetime="2030-01-02T03:04:59Z">2030-01-02 03:04 UTC</time>'
    assert when(None) == "\u2013"


# --- the revocation reason staff give reaches the owner, escaped on the page ---

STAFF_REASON = "<b>key leaked</b> on the build box\nsee ticket 42"


def test_the_owner_sees_the_reason_staff_gave_in_the_history(issued, alice, charlie):
    services.certificate_revoke(certificate=issued, origin=services.Origin(actor=charlie), reason=STAFF_REASON)

    body = detail(alice, issued).content.decode()

    assert "Reason: &lt;b&gt;key leaked&lt;/b&gt; on the build box" in body
    assert "<b>key leaked" not in body
    assert "an administrator" in body


def cloudflare_finishes_the_revocation(certificate: Certificate) -> None:
    """What polling records when Cloudflare has revoked it: an event by no one, with no reason."""
    Certificate.objects.filter(pk=certificate.pk).update(status=Certificate.Status.REVOKED)
    audit(
        AuditEvent.Action.REVOKED,
        services.Origin(actor=None),
        certificate=certificate,
        old=Certificate.Status.PENDING_REVOCATION,
        new=Certificate.Status.REVOKED,
        detail={"source": "polling"},
    )


def test_the_revocation_email_carries_the_reason_staff_gave(issued, alice, charlie):
    services.certificate_revoke(certificate=issued, origin=services.Origin(actor=charlie), reason=STAFF_REASON)
    cloudflare_finishes_the_revocation(issued)
    mail.outbox.clear()

    failed = certificates_notify_owners(notices=[(issued.pk, AuditEvent.Action.REVOKED)])

    (message,) = mail.outbox
    assert failed == []
    assert message.to == [alice.email]
    assert "has been revoked" in message.body
    # One line, as typed (a text email: nothing to HTML-escape), and no line of its own from staff's text.
    assert "An administrator revoked it, giving this reason: <b>key leaked</b> on the build box see ticket 42" in (
        message.body
    )


def test_a_portal_ca_revocation_by_staff_emails_the_reason_once_committed(
    emulator, alice, charlie, django_capture_on_commit_callbacks
):
    trusted_portal_ca(name="Example API CA")
    certificate = issue(alice, "laptop")

    with django_capture_on_commit_callbacks(execute=True):
        services.certificate_revoke(
            certificate=certificate, origin=services.Origin(actor=charlie), reason="lost laptop"
        )

    (message,) = mail.outbox
    assert "An administrator revoked it, giving this reason: lost laptop" in message.body


def test_the_email_of_an_owners_own_revocation_names_no_administrator(issued, alice):
    services.certificate_revoke(certificate=issued, origin=services.Origin(actor=alice), reason="revoked by owner")
    cloudflare_finishes_the_revocation(issued)
    mail.outbox.clear()

    certificates_notify_owners(notices=[(issued.pk, AuditEvent.Action.REVOKED)])

    (message,) = mail.outbox
    assert "has been revoked" in message.body
    assert "administrator" not in message.body


# --- the quota: said before a key is made, pointing at a revoke action that exists ---


def test_at_the_quota_create_is_disabled_with_a_way_to_make_room(issued, alice, settings):
    settings.CERTIFICATE_MAX_ACTIVE_PER_USER = 1
    client = logged_in(alice)

    new_page = client.get(reverse("certificates:new"))
    text = page_text(new_page)
    notice = re.search(r'<p class="notice notice-warning" data-testid="user-full">(.*?)</p>', text, re.S)
    dashboard = page_text(client.get(reverse("certificates:dashboard")))

    assert new_page.context["may_issue"] is False
    assert re.search(r'data-testid="create-button" disabled>', text)
    assert 'data-testid="create-disabled-why"' in text
    assert notice, "the limit is explained on the page, not only once a request fails"
    assert f'href="{reverse("certificates:dashboard")}"' in notice.group(1)
    assert "Revoke" in notice.group(1)
    # The action the notice points at is on the dashboard: each revocable row links to its confirmation page.
    assert f'href="{reverse("certificates:revoke", args=[issued.pk])}" data-testid="row-revoke"' in dashboard


def test_under_the_quota_the_limit_notice_waits_hidden_for_the_page_script(issued, alice):
    text = page_text(logged_in(alice).get(reverse("certificates:new")))

    assert '<p class="notice notice-warning" data-testid="user-full" hidden>' in text
    assert 'data-testid="create-disabled-why"' not in text


# --- the paste tab: the command for a key you have, and one for a new key ---


def test_the_paste_tab_offers_a_command_for_an_existing_key_and_one_for_a_new_key(db, alice):
    text = page_text(logged_in(alice).get(reverse("certificates:new")))
    existing = re.search(r'data-testid="openssl-command">([^<]*)<', text).group(1)
    new_key = re.search(r'data-testid="openssl-command-new-key">([^<]*)<', text).group(1)

    assert existing.startswith("openssl req -new -key client.key -out client.csr -subj ")
    assert "-newkey" not in existing
    assert "-newkey" in new_key
    assert f"CN=portal-user-{alice.pk}" in existing
    assert f"CN=portal-user-{alice.pk}" in new_key
    assert "Already have a key?" not in text


def test_the_detail_page_offers_the_pem_to_copy(issued, alice):
    text = page_text(detail(alice, issued))

    button = re.search(r'<button type="button" class="copy button-secondary" data-copy="([^"]*)"', text, re.S)
    assert button
    assert button.group(1) == issued.certificate_pem
