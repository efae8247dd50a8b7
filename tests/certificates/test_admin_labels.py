"""The admin as staff read it: model names spelled right, workers' bookkeeping not editable on a certificate."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from certificates import services
from certificates.models import Certificate
from tests.support.accounts import signed_in
from tests.support.pki import policy_csr


@pytest.fixture
def staff(charlie) -> Client:
    return signed_in(charlie)


def test_the_admin_index_names_the_models_in_plain_english(staff):
    page = staff.get(reverse("admin:index")).content.decode()

    assert "Allowlist entries" in page
    assert "API tokens" in page
    assert "entrys" not in page
    assert "Api tokens" not in page
    assert "mTLS developer portal: administration" in page
    assert "Django administration" not in page


def test_the_certificate_form_does_not_let_staff_edit_what_the_workers_keep(staff, emulator, alice):
    certificate = services.certificate_issue(
        user=alice, csr=policy_csr(alice), validity_days=365, name="laptop", origin=services.Origin(actor=alice)
    )
    url = reverse("admin:certificates_certificate_change", args=[certificate.pk])

    form = staff.get(url).content.decode()
    staff.post(url, {"name": "laptop", "attempts": "99", "reminders_sent": "[30, 7]", "revoked_at_0": "2020-01-01"})

    for field in ("attempts", "reminders_sent", "last_attempt_at", "revoked_at", "authority"):
        assert f'name="{field}' not in form, field
    certificate.refresh_from_db()
    assert certificate.attempts == 0
    assert certificate.reminders_sent == []
    assert certificate.revoked_at is None
    assert certificate.status == Certificate.Status.ACTIVE
