"""API v1: bearer tokens, the browser session with CSRF, ownership, and 4xx JSON for bad input."""

from __future__ import annotations

import json
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core import signing
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from certificates import services
from certificates.listing import CURSOR_SALT
from certificates.models import ApiToken, AuditEvent, Certificate
from tests.support.api import issue_via_api, token_for
from tests.support.listing import certificate_rows, expected_order
from tests.support.pki import UNGRANTED_REQUESTS, policy_csr
from tests.support.portal_ca import trusted_portal_ca


def test_it_issues_a_certificate_with_201_and_the_documented_fields(emulator, api, alice):
    response = issue_via_api(api, alice)

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) >= {
        "id",
        "name",
        "status",
        "certificate",
        "fingerprint_sha256",
        "serial_number",
        "issued_on",
        "expires_on",
    }
    assert body["status"] == "active"
    assert body["certificate"].startswith("-----BEGIN CERTIFICATE-----")
    assert body["fingerprint_sha256"] == body["fingerprint_sha256"].lower()


def test_it_lists_only_your_certificates(emulator, api, alice, bob):
    issue_via_api(api, alice)
    issue_via_api(api, bob)

    items = api.as_user(alice).get("/certificates").json()["items"]

    assert [item["name"] for item in items] == ["ci runner"]
    assert all(Certificate.objects.get(pk=item["id"]).owner == alice for item in items)


def test_another_users_certificate_is_a_404_everywhere(emulator, api, alice, bob):
    certificate_id = issue_via_api(api, alice).json()["id"]
    api.as_user(bob)

    assert api.get(f"/certificates/{certificate_id}").status_code == 404
    assert api.post(f"/certificates/{certificate_id}/revoke").status_code == 404
    assert api.post(f"/certificates/{certificate_id}/download-events", {"format": "zip"}).status_code == 404
    assert Certificate.objects.get(pk=certificate_id).status == Certificate.Status.ACTIVE


def test_revoke_answers_202_pending_revocation(emulator, api, alice):
    certificate_id = issue_via_api(api, alice).json()["id"]

    response = api.post(f"/certificates/{certificate_id}/revoke", {"reason": "rotated"})

    assert response.status_code == 202
    assert response.json()["status"] == "pending_revocation"
    assert api.post(f"/certificates/{certificate_id}/revoke").status_code == 409


def test_the_policy_names_the_subject_for_the_caller(db, api, alice):
    policy = api.as_user(alice).get("/csr-policy").json()

    assert policy["subject"]["common_name"] == f"portal-user-{alice.pk}"
    assert policy["validity_days"]["default"] in policy["validity_days"]["choices"]
    assert f"CN=portal-user-{alice.pk}" in policy["openssl_command"]
    assert policy["zone_capacity"] == 100


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer mtp_wrong"}, {"Authorization": "Basic YWxpY2U6cGFzcw=="}],
    ids=["none", "unknown-token", "basic"],
)
def test_it_answers_401_json_without_a_valid_token(db, headers):
    response = Client().get("/api/v1/certificates", headers=headers)

    assert response.status_code == 401
    assert "Bearer" in response.json()["detail"]


def test_a_revoked_token_stops_working(db, alice):
    token, secret = services.api_token_create(user=alice, name="t", origin=services.Origin(actor=alice))
    services.api_token_revoke(token=token, origin=services.Origin(actor=alice))

    assert Client().get("/api/v1/certificates", headers={"Authorization": f"Bearer {secret}"}).status_code == 401


def test_a_token_of_a_deactivated_user_stops_working(db, alice):
    secret = token_for(alice)
    alice.is_active = False
    alice.save()

    assert Client().get("/api/v1/certificates", headers={"Authorization": f"Bearer {secret}"}).status_code == 401


def test_the_browser_session_needs_a_csrf_token_to_post(emulator, alice):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)
    body = json.dumps({"csr": policy_csr(alice), "validity_days": 365, "name": "x"})

    refused = browser.post("/api/v1/certificates", data=body, content_type="application/json")
    browser.get("/certificates/new/")  # sets the CSRF cookie, as the page does
    accepted = browser.post(
        "/api/v1/certificates",
        data=body,
        content_type="application/json",
        headers={"X-CSRFToken": browser.cookies["csrftoken"].value},
    )

    assert refused.status_code == 403
    assert accepted.status_code == 201


BAD_BODIES = {
    "not JSON": (None, "{not json", 400),
    "empty object": ({}, None, 422),
    "csr not a string": ({"csr": 5, "validity_days": 365, "name": "x"}, None, 422),
    "validity not a number": ({"csr": "x", "validity_days": "soon", "name": "x"}, None, 422),
    "validity not offered": ("CSR", {"validity_days": 400}, 400),
    "name too long": ("CSR", {"name": "n" * 101}, 422),
    "empty name": ("CSR", {"name": "   "}, 400),
    "CSR for someone else": ("OTHER", {}, 400),
    "CSR is garbage": ({"csr": "hello", "validity_days": 365, "name": "x"}, None, 400),
    "a private key instead of a CSR": (
        {
            "csr": "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49\n-----END PRIVATE KEY-----\n",
            "validity_days": 365,
            "name": "x",
        },
        None,
        400,
    ),
}


@pytest.mark.parametrize(("body", "extra", "status"), BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_bad_input_gets_a_4xx_message_and_no_cloudflare_call(emulator, api, alice, bob, body, extra, status):
    api.as_user(alice)
    if body == "CSR":
        body = {"csr": policy_csr(alice), "validity_days": 365, "name": "x", **extra}
    elif body == "OTHER":
        body = {"csr": policy_csr(bob), "validity_days": 365, "name": "x"}
    response = api.post("/certificates", raw=extra) if body is None else api.post("/certificates", body)

    assert response.status_code == status, response.content
    assert isinstance(response.json()["detail"], str)
    assert response.json()["detail"]
    assert emulator.request_log == []
    assert not Certificate.objects.exists()
    assert b"PRIVATE KEY" not in response.content


def test_bad_ids_are_404_not_500(emulator, api, alice):
    api.as_user(alice)
    assert api.get("/certificates/999999").status_code == 404
    assert api.get("/certificates/not-a-number").status_code == 404


def test_download_events_are_audited_and_unknown_formats_refused(emulator, api, alice):
    certificate_id = issue_via_api(api, alice).json()["id"]

    assert api.post(f"/certificates/{certificate_id}/download-events", {"format": "pkcs12"}).status_code == 204
    assert api.post(f"/certificates/{certificate_id}/download-events", {"format": "exe"}).status_code == 400
    event = AuditEvent.objects.get(action=AuditEvent.Action.DOWNLOADED)
    assert event.detail == {"format": "pkcs12"}
    assert event.actor == alice


def test_zone_full_is_a_409_with_the_message(emulator, api, alice, settings):
    settings.CLOUDFLARE_ZONE_CAPACITY = 0

    response = issue_via_api(api, alice)

    assert response.status_code == 409
    assert response.json()["detail"].startswith("The zone has no room for more certificates")


def test_cloudflare_down_is_a_503_with_a_message(emulator, api, alice):
    emulator.faults.connect_error(times=10)

    response = issue_via_api(api, alice)

    assert response.status_code == 503
    assert "nothing was issued" in response.json()["detail"]


def test_the_openapi_document_describes_the_endpoints(db):
    document = Client().get("/api/v1/openapi.json").json()

    paths = document["paths"]
    assert {"/api/v1/certificates", "/api/v1/certificates/{certificate_id}", "/api/v1/csr-policy"} <= set(paths)
    assert "post" in paths["/api/v1/certificates/{certificate_id}/revoke"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"name": "line\nbreak"}, "control characters"),
        ({"name": "nul\x00byte"}, "control characters"),
        ({"csr": "-----BEGIN CERTIFICATE REQUEST-----\n\ud800\n-----END CERTIFICATE REQUEST-----\n"}, "not text"),
    ],
    ids=["newline-in-name", "nul-in-name", "lone-surrogate-in-csr"],
)
def test_text_that_would_break_emails_or_the_database_is_a_400(emulator, api, alice, overrides, message):
    body = {"csr": policy_csr(alice), "validity_days": 365, "name": "x", **overrides}

    response = api.as_user(alice).post("/certificates", raw=json.dumps(body))

    assert response.status_code == 400, response.content
    assert message in response.json()["detail"]
    assert emulator.request_log == []


def test_the_policy_lists_the_extensions_a_csr_may_request(db, api, alice):
    policy = api.as_user(alice).get("/csr-policy").json()

    assert policy["allowed_extensions"] == [
        {"name": "basicConstraints", "values": ["CA:FALSE"]},
        {"name": "keyUsage", "values": ["digitalSignature", "keyEncipherment"]},
        {"name": "extendedKeyUsage", "values": ["clientAuth"]},
    ]


@pytest.mark.parametrize(("extensions", "attributes", "message"), UNGRANTED_REQUESTS.values(), ids=UNGRANTED_REQUESTS)
def test_a_csr_requesting_what_the_policy_does_not_grant_is_a_400_naming_it(
    emulator, api, alice, extensions, attributes, message
):
    csr = policy_csr(alice, extensions=extensions, attributes=attributes)

    response = issue_via_api(api, alice, csr=csr)

    assert response.status_code == 400, response.content
    assert message in response.json()["detail"]
    assert emulator.request_log == []
    assert not Certificate.objects.exists()


def test_an_expired_token_is_a_401(db, alice, settings):
    token, secret = services.api_token_create(user=alice, name="t", origin=services.Origin(actor=alice), days=1)
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    response = Client().get("/api/v1/certificates", headers={"Authorization": f"Bearer {secret}"})

    assert response.status_code == 401
    assert response.json()["detail"]


def test_a_token_works_until_it_expires(db, alice):
    token, secret = services.api_token_create(user=alice, name="t", origin=services.Origin(actor=alice), days=1)
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() + timedelta(seconds=30))

    assert Client().get("/api/v1/certificates", headers={"Authorization": f"Bearer {secret}"}).status_code == 200


def test_a_read_only_token_reads_but_cannot_write(emulator, alice):
    issued = services.certificate_issue(
        user=alice, csr=policy_csr(alice), validity_days=365, name="ci", origin=services.Origin(actor=alice)
    )
    _token, secret = services.api_token_create(
        user=alice, name="t", origin=services.Origin(actor=alice), scope=ApiToken.Scope.READ_ONLY
    )
    client, headers = Client(), {"Authorization": f"Bearer {secret}"}
    calls_before = len(emulator.request_log)

    listed = client.get("/api/v1/certificates", headers=headers)
    one = client.get(f"/api/v1/certificates/{issued.pk}", headers=headers)
    policy = client.get("/api/v1/csr-policy", headers=headers)
    revoke = client.post(
        f"/api/v1/certificates/{issued.pk}/revoke", data="{}", content_type="application/json", headers=headers
    )
    issue = client.post(
        "/api/v1/certificates",
        data=json.dumps({"csr": policy_csr(alice), "validity_days": 365, "name": "x"}),
        content_type="application/json",
        headers=headers,
    )

    assert (listed.status_code, one.status_code, policy.status_code) == (200, 200, 200)
    assert revoke.status_code == issue.status_code == 403
    assert "read-only" in revoke.json()["detail"]
    assert Certificate.objects.get().status == Certificate.Status.ACTIVE
    assert len(emulator.request_log) == calls_before


def test_a_browser_session_may_write(emulator, alice):
    browser = Client()
    browser.force_login(alice)

    body = '{"networks": ["93.184.216.0/24"]}'
    response = browser.put("/api/v1/allowlist", data=body, content_type="application/json")

    assert response.status_code == 200
    assert services.allowlist_get(user=alice) == ["93.184.216.0/24"]


# -- the list, a page at a time ---------------------------------------------------------------------------------


def all_pages(api, path: str) -> tuple[list[int], int]:
    """Every id `path` lists, following `next` to the last page; and how many pages that took."""
    ids: list[int] = []
    pages = 0
    url: str | None = f"/api/v1{path}"
    while url:
        response = api.client.get(url, headers=api.headers)
        assert response.status_code == 200, response.content
        body = response.json()
        ids += [item["id"] for item in body["items"]]
        pages += 1
        url = body["next"]
        if url is not None:
            assert parse_qs(urlsplit(url).query)["cursor"] == [body["next_cursor"]]
        assert pages <= 10, "the pages never end"
    return ids, pages


@pytest.mark.parametrize("sort", ["-created_at", "created_at", "expires_on", "-expires_on"])
def test_paging_lists_each_certificate_once_in_the_order_of_the_sort(api, alice, sort):
    certificate_rows(alice, 120)
    api.as_user(alice)

    ids, pages = all_pages(api, f"/certificates?sort={sort}")

    assert ids == expected_order(alice, sort)
    assert len(set(ids)) == 120
    assert pages == 3  # 50 + 50 + 20


def test_the_default_is_every_status_newest_first_fifty_a_page(api, alice):
    certificate_rows(alice, 60)

    body = api.as_user(alice).get("/certificates").json()

    assert [item["id"] for item in body["items"]] == expected_order(alice, "-created_at")[:50]
    assert {item["status"] for item in body["items"]} >= {"revoked", "expired", "issuing", "active"}
    assert body["next"].startswith("http://testserver/api/v1/certificates?cursor=")


def test_q_finds_by_name_and_the_next_link_keeps_it(api, alice, bob):
    rows = certificate_rows(alice, 30)
    certificate_rows(bob, 30)
    wanted = sorted(row.pk for row in rows if "row-1" in row.name)  # row-1 and row-10 ... row-19

    url, seen = "/certificates?limit=4&q=row-1", []
    while url:
        body = api.as_user(alice).get(url).json()
        seen += [item["id"] for item in body["items"]]
        url = body["next"] and body["next"].removeprefix("http://testserver/api/v1")

    assert sorted(seen) == wanted


def test_a_search_longer_than_any_key_is_a_400(api, alice):
    response = api.as_user(alice).get("/certificates?q=" + "a" * 101)

    assert response.status_code == 400
    assert "q must be at most 100 characters" in response.json()["detail"]


def test_the_list_carries_each_pem_but_reads_no_csr(api, alice):
    certificate_rows(alice, 3, authority=trusted_portal_ca())
    with CaptureQueriesContext(connection) as captured:
        body = api.as_user(alice).get("/certificates").json()

    assert len(body["items"]) == 3
    listing_sql = [q["sql"] for q in captured.captured_queries if 'FROM "certificates_certificate"' in q["sql"]]
    assert listing_sql
    assert not [sql for sql in listing_sql if '"certificates_certificate"."csr"' in sql]
    assert not [sql for sql in listing_sql if '"certificates_certificateauthority"."crl_der"' in sql]
    assert all('"certificates_certificate"."certificate_pem"' in sql for sql in listing_sql if "LIMIT" in sql)


def test_a_limit_sets_the_page_size_and_the_next_link_keeps_the_filter_and_sort(api, alice):
    certificate_rows(alice, 30)
    api.as_user(alice)

    ids, pages = all_pages(api, "/certificates?status=active&sort=expires_on&limit=4")

    assert ids == expected_order(alice, "expires_on", statuses=Certificate.USABLE)
    assert pages == 4  # 15 usable rows (active and pending reactivation), 4 a page


@pytest.mark.parametrize(
    ("status", "statuses"),
    [("active", Certificate.USABLE), ("revoked", {"revoked"}), ("expired", {"expired"}), ("failed", set())],
)
def test_a_status_filter_lists_only_those(api, alice, status, statuses):
    certificate_rows(alice, 24)

    items = api.as_user(alice).get(f"/certificates?status={status}&limit=200").json()["items"]

    assert [item["id"] for item in items] == expected_order(alice, "-created_at", statuses=statuses)


def test_another_users_certificates_never_appear_on_any_page(api, alice, bob):
    certificate_rows(bob, 40)
    mine = {row.pk for row in certificate_rows(alice, 40)}
    certificate_rows(bob, 40)
    api.as_user(alice)

    for sort in ("-created_at", "expires_on"):
        ids, _ = all_pages(api, f"/certificates?sort={sort}&limit=7")
        assert sorted(ids) == sorted(mine)


def test_a_cursor_of_another_user_only_says_where_to_start_in_your_own_list(api, alice, bob):
    certificate_rows(bob, 10)
    certificate_rows(alice, 10)
    bobs_cursor = api.as_user(bob).get("/certificates?limit=3").json()["next_cursor"]

    items = api.as_user(alice).get(f"/certificates?limit=50&cursor={bobs_cursor}").json()["items"]

    assert {Certificate.objects.get(pk=item["id"]).owner for item in items} <= {alice}


def a_cursor(api, user) -> str:
    certificate_rows(user, 5)
    return api.as_user(user).get("/certificates?limit=2").json()["next_cursor"]


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "",  # an empty cursor is the first page (tested below); "=" keeps it a parameter with a value
        "W1siLWNyZWF0ZWRfYXQiLCIyMDI2LTAxLTAxVDAwOjAwOjAwIiwxXV0",  # base64 JSON of a key, unsigned
        signing.dumps(["-created_at", "2026-01-01T00:00:00+00:00", 1], salt="another.purpose"),
        signing.dumps(["-created_at", "not a date", 1], salt=CURSOR_SALT),
        signing.dumps(["-created_at", "2026-01-01T00:00:00+00:00", "1"], salt=CURSOR_SALT),
        signing.dumps({"sort": "-created_at"}, salt=CURSOR_SALT),
        "%00" * 10,
        "x" * 5000,
    ],
    ids=["garbage", "empty", "unsigned", "other-salt", "bad-date", "id-not-int", "not-a-list", "nul", "huge"],
)
def test_a_forged_or_garbage_cursor_is_a_400_not_a_500(api, alice, cursor):
    certificate_rows(alice, 3)

    response = api.as_user(alice).get(f"/certificates?cursor={cursor}")

    if cursor == "":
        assert response.status_code == 200
        return
    assert response.status_code == 400, response.content
    assert "cursor" in response.json()["detail"]


def test_a_tampered_cursor_is_a_400(api, alice):
    cursor = a_cursor(api, alice)
    tampered = cursor[:-3] + ("AAA" if not cursor.endswith("AAA") else "BBB")

    response = api.get(f"/certificates?limit=2&cursor={tampered}")

    assert response.status_code == 400
    assert "cursor is not valid" in response.json()["detail"]


def test_a_cursor_used_with_another_sort_is_a_400(api, alice):
    cursor = a_cursor(api, alice)

    response = api.get(f"/certificates?limit=2&sort=expires_on&cursor={cursor}")

    assert response.status_code == 400
    assert "another sort order" in response.json()["detail"]


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("status=gone", "status must be one of active"),
        ("sort=name", "sort must be one of -created_at"),
        ("sort=id;drop", "sort must be one of"),
        ("limit=0", "limit must be a whole number from 1 to 200"),
        ("limit=201", "limit must be a whole number from 1 to 200"),
        ("limit=ten", "limit must be a whole number from 1 to 200"),
        ("limit=-1", "limit must be a whole number from 1 to 200"),
    ],
)
def test_bad_list_parameters_are_a_400_naming_what_is_accepted(api, alice, query, named):
    response = api.as_user(alice).get(f"/certificates?{query}")

    assert response.status_code == 400
    assert named in response.json()["detail"]


def test_the_list_costs_the_same_queries_for_10_or_120_certificates(api, alice, bob):
    """Each item names its issuer: the CA comes with the rows, not a query per row."""
    ca = trusted_portal_ca()
    api.as_user(alice).get("/csr-policy")  # the token's first use records itself once
    certificate_rows(alice, 10, authority=ca)
    with CaptureQueriesContext(connection) as few:
        assert len(api.get("/certificates").json()["items"]) == 10
    certificate_rows(bob, 110)  # bob's rows must not cost alice anything either
    certificate_rows(alice, 110, authority=ca)
    with CaptureQueriesContext(connection) as many:
        body = api.get("/certificates?sort=expires_on").json()
    with CaptureQueriesContext(connection) as deeper:
        api.client.get(body["next"], headers=api.headers)

    assert len(body["items"]) == 50
    assert len(few) == len(many) == len(deeper), [query["sql"] for query in few.captured_queries]
