"""Every answer under /api/v1/, errors included, is JSON with a `detail`, and a refused request changes nothing."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from certificates import services
from certificates.models import AllowlistEntry, ApiToken, AuditEvent, Certificate
from tests.support.pki import policy_csr

BODY_LIMIT = 10_000


@pytest.fixture
def issued(emulator, alice) -> Certificate:
    return services.certificate_issue(
        user=alice, csr=policy_csr(alice), validity_days=365, name="build server", origin=services.Origin(actor=alice)
    )


def bearer(user, *, scope: str = ApiToken.Scope.READ_WRITE) -> dict[str, str]:
    _token, secret = services.api_token_create(user=user, name="t", origin=services.Origin(actor=user), scope=scope)
    return {"Authorization": f"Bearer {secret}"}


def database_state() -> tuple:
    """What a refused request must not change (a token's last use is bookkeeping, not a change)."""
    return (
        list(Certificate.objects.order_by("pk").values_list("pk", "status", "name")),
        list(ApiToken.objects.order_by("pk").values_list("pk", "revoked_at", "expires_at", "scope")),
        list(AllowlistEntry.objects.order_by("pk").values_list("pk", "network")),
        AuditEvent.objects.count(),
    )


def json_body(size: int) -> str:
    return json.dumps({"csr": "x" * size, "validity_days": 365, "name": "big"})


# (method, path, body, headers: "token" | "read-only" | "none", status)
CASES = {
    "unknown path": ("get", "/api/v1/no-such-thing", None, "token", 404),
    "unknown path, wrong method too": ("delete", "/api/v1/no/such/thing", None, "token", 404),
    "the API root": ("get", "/api/v1/", None, "token", 404),
    "unknown id": ("get", "/api/v1/certificates/999999", None, "token", 404),
    "non-integer id": ("get", "/api/v1/certificates/abc", None, "token", 404),
    "negative id": ("get", "/api/v1/certificates/-1", None, "token", 404),
    "id beyond bigint": ("get", "/api/v1/certificates/99999999999999999999999", None, "token", 404),
    "non-integer id on a write": ("post", "/api/v1/certificates/abc/revoke", "{}", "token", 404),
    "wrong method on a list": ("delete", "/api/v1/certificates", None, "token", 405),
    "wrong method on one": ("put", "/api/v1/certificates/{id}", "{}", "token", 405),
    "body over the upload limit": ("post", "/api/v1/certificates", json_body(BODY_LIMIT), "token", 413),
    "malformed JSON": ("post", "/api/v1/certificates", "{not json", "token", 400),
    "JSON of the wrong shape": ("put", "/api/v1/allowlist", '{"networks": "10.0.0.0/8"}', "token", 422),
    "no credentials, GET": ("get", "/api/v1/certificates", None, "none", 401),
    "no credentials, POST": ("post", "/api/v1/certificates", json_body(10), "none", 401),
    "no credentials, PUT": ("put", "/api/v1/allowlist", '{"networks": []}', "none", 401),
    "no credentials, revoke": ("post", "/api/v1/certificates/{id}/revoke", "{}", "none", 401),
    "read-only token, POST": ("post", "/api/v1/certificates/{id}/revoke", "{}", "read-only", 403),
    "read-only token, PUT": ("put", "/api/v1/allowlist", '{"networks": ["192.0.2.0/24"]}', "read-only", 403),
}


@pytest.mark.parametrize(("method", "path", "body", "who", "status"), CASES.values(), ids=CASES.keys())
def test_every_error_is_json_with_a_detail_and_changes_nothing(
    issued, alice, settings, method, path, body, who, status
):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = BODY_LIMIT
    headers = {"token": bearer(alice), "read-only": bearer(alice, scope=ApiToken.Scope.READ_ONLY), "none": {}}[who]
    before = database_state()

    send = getattr(Client(enforce_csrf_checks=True), method)  # as a real client: no test-only CSRF bypass
    kwargs = {"data": body, "content_type": "application/json"} if body is not None else {}
    response = send(path.format(id=issued.pk), headers=headers, **kwargs)

    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    assert isinstance(response.json()["detail"], str)
    assert response.json()["detail"]
    assert database_state() == before
    assert Certificate.objects.get(pk=issued.pk).status == Certificate.Status.ACTIVE


def test_a_malformed_id_is_answered_exactly_like_an_unknown_one(issued, alice, bob):
    client, headers = Client(), bearer(alice)

    unknown = client.get("/api/v1/certificates/999999", headers=headers)
    malformed = client.get("/api/v1/certificates/abc", headers=headers)
    too_big = client.get("/api/v1/certificates/99999999999999999999999", headers=headers)
    someone_elses = client.get(f"/api/v1/certificates/{issued.pk}", headers=bearer(bob))

    assert unknown.status_code == malformed.status_code == too_big.status_code == someone_elses.status_code == 404
    assert unknown.content == malformed.content == too_big.content == someone_elses.content


def test_a_wrong_method_names_the_allowed_ones(db, alice):
    response = Client().delete("/api/v1/certificates", headers=bearer(alice))

    assert response.status_code == 405
    assert set(response["Allow"].replace(" ", "").split(",")) == {"GET", "POST"}
    assert "DELETE" in response.json()["detail"]


def test_a_body_over_the_limit_names_the_limit(db, alice, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = BODY_LIMIT

    response = Client().post(
        "/api/v1/certificates", data=json_body(BODY_LIMIT), content_type="application/json", headers=bearer(alice)
    )

    assert response.status_code == 413
    assert str(BODY_LIMIT) in response.json()["detail"]


def test_an_unexpected_error_is_a_500_json_without_a_traceback(db, alice, monkeypatch, caplog):
    def broken(**kwargs):
        raise RuntimeError("internal detail that must not leak")

    monkeypatch.setattr(services, "allowlist_standing", broken)

    response = Client().get("/api/v1/allowlist", headers=bearer(alice))

    assert response.status_code == 500
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["detail"]
    assert b"internal detail" not in response.content
    assert b"Traceback" not in response.content
    assert "internal detail that must not leak" in caplog.text  # logged for us, not shown to them


def test_an_unauthenticated_write_is_401_not_a_csrf_403(db):
    response = Client(enforce_csrf_checks=True).post(
        "/api/v1/certificates", data=json_body(10), content_type="application/json"
    )

    assert response.status_code == 401
    assert "Bearer" in response.json()["detail"]


def test_a_logged_in_write_without_the_csrf_token_is_still_refused(db, alice):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)

    response = browser.put("/api/v1/allowlist", data='{"networks": ["192.0.2.0/24"]}', content_type="application/json")

    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]
    assert not AllowlistEntry.objects.exists()


def test_the_openapi_document_keeps_the_plain_id_in_paths(db):
    paths = Client().get("/api/v1/openapi.json").json()["paths"]

    assert "/api/v1/certificates/{certificate_id}" in paths
    assert not any("int:" in path for path in paths)
