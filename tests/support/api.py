"""The JSON API as a client script sees it: a bearer token, JSON in and out."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from certificates import services
from tests.support.pki import policy_csr


def token_for(user) -> str:
    return services.api_token_create(user=user, name="test", origin=services.Origin(actor=user))[1]


@pytest.fixture
def api(db):
    """A client speaking to the API as a given user with a bearer token."""

    class Api:
        def __init__(self) -> None:
            self.client = Client()
            self.headers: dict[str, str] = {}

        def as_user(self, user) -> Api:
            self.headers = {"Authorization": f"Bearer {token_for(user)}"}
            return self

        def get(self, path):
            return self.client.get(f"/api/v1{path}", headers=self.headers)

        def post(self, path, body=None, raw=None):
            data = raw if raw is not None else json.dumps(body or {})
            return self.client.post(f"/api/v1{path}", data=data, content_type="application/json", headers=self.headers)

    return Api()


def issue_via_api(api, user, **overrides):
    body = {"csr": policy_csr(user), "validity_days": 365, "name": "ci runner", **overrides}
    return api.as_user(user).post("/certificates", body)
