"""python manage.py issue_api_token USERNAME [--create-user] [--email E] [--name N] [--days D] [--read-only]

Prints only the token.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from certificates import services
from certificates.models import ApiToken


class Command(BaseCommand):
    help = "Create a personal API token for a user and print it (only the token, for scripts)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--create-user", action="store_true", help="create the user if it does not exist")
        parser.add_argument("--email", default="", help="email of a user made with --create-user")
        parser.add_argument("--name", default="management command", help="a name for the token")
        parser.add_argument(
            "--days",
            type=int,
            default=None,
            help=f"days the token lasts (default API_TOKEN_DEFAULT_DAYS, {settings.API_TOKEN_DEFAULT_DAYS}; "
            f"at most API_TOKEN_MAX_DAYS, {settings.API_TOKEN_MAX_DAYS})",
        )
        parser.add_argument("--read-only", action="store_true", help="the token may read but not change anything")

    def handle(
        self,
        *args: Any,
        username: str,
        create_user: bool,
        email: str,
        name: str,
        days: int | None,
        read_only: bool,
        **options: Any,
    ) -> None:
        # One transaction: a refused token (say --days over the cap) must not leave a user made by --create-user.
        with transaction.atomic():
            user = self._user(username, create_user=create_user, email=email)
            try:
                _token, secret = services.api_token_create(
                    user=user,
                    name=name,
                    origin=services.Origin(actor=None),
                    days=days,
                    scope=ApiToken.Scope.READ_ONLY if read_only else ApiToken.Scope.READ_WRITE,
                )
            except services.ServiceError as exc:
                raise CommandError(exc.message) from exc
        self.stdout.write(secret)

    def _user(self, username: str, *, create_user: bool, email: str) -> User:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            if not create_user:
                raise CommandError(f"No user {username!r}; pass --create-user to make one.")
            user = get_user_model().objects.create_user(username=username, email=email)
            user.set_unusable_password()
            user.save(update_fields=["password"])
        elif not user.is_active:
            raise CommandError(f"User {username!r} is deactivated.")
        return user
