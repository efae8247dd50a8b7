from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from certificates import services


def run(*args: str) -> str:
    out = StringIO()
    call_command("issue_api_token", *args, stdout=out)
    return out.getvalue()


def test_it_prints_only_a_working_token(alice):
    output = run("alice")

    secret = output.strip()
    assert output == secret + "\n"
    assert services.api_token_authenticate(secret) == alice


def test_it_creates_the_user_when_asked(db):
    secret = run("robot", "--create-user", "--email", "robot@example.com").strip()

    robot = get_user_model().objects.get(username="robot")
    assert robot.email == "robot@example.com"
    assert not robot.has_usable_password()
    assert services.api_token_authenticate(secret) == robot


def test_it_refuses_an_unknown_user_without_create_user(db):
    with pytest.raises(CommandError, match="--create-user"):
        run("nobody")
