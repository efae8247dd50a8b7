"""python manage.py issue_api_token USERNAME [--create-user] [--email E] [--name N]: prints only the token."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from certificates import services


class Command(BaseCommand):
    help = "Create a personal API token for a user and print it (only the token, for scripts)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--create-user", action="store_true", help="create the user if it does not exist")
        parser.add_argument("--email", default="", help="email of a user made with --create-user")
        parser.add_argument("--name", default="management command", help="a name for the token")

    def handle(self, *args: Any, username: str, create_user: bool, email: str, name: str, **options: Any) -> None:
        User = get_user_model()
        user = User.objects.filter(username=username).first()
        if user is None:
            if not create_user:
                raise CommandError(f"No user {username!r}; pass --create-user to make one.")
            user = User.objects.create_user(username=username, email=email)
            user.set_unusable_password()
            user.save(update_fields=["password"])
        elif not user.is_active:
            raise CommandError(f"User {username!r} is deactivated.")
        try:
            _token, secret = services.api_token_create(user=user, name=name, origin=services.Origin(actor=None))
        except services.ServiceError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(secret)
