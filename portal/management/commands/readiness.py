"""python manage.py readiness [--for web|worker|beat|all] [--http HOST:PORT]: the /readyz checks from a shell.

Without --http the checks run in this process (a worker's or beat's container has no web server to ask); with it
the command asks the web server's /readyz, so that the healthcheck also proves gunicorn answers. Either way it prints
the JSON answer and exits 0 when every check passes, 1 otherwise (docker-compose.yml's healthchecks).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from portal import health

HTTP_TIMEOUT_SECONDS = 10.0


class Command(BaseCommand):
    help = "Run the /readyz checks here, or ask a web server's /readyz; exit non-zero when one fails."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--for", dest="scope", choices=sorted(health.SCOPES), default="all")
        parser.add_argument("--http", metavar="HOST:PORT", help="ask the web server at this address instead")

    def handle(self, *args: Any, **options: Any) -> None:
        scope = options["scope"]
        if options["http"]:
            ok, answer = ask_web_server(options["http"], scope)
        else:
            result = health.readiness(scope=scope)
            ok, answer = result.ok, result.as_dict()
        self.stdout.write(json.dumps(answer, sort_keys=True))
        if not ok:
            raise CommandError(f"not ready: {', '.join(answer.get('failing', [])) or 'no answer'}", returncode=1)


def ask_web_server(address: str, scope: str) -> tuple[bool, dict[str, Any]]:
    # The address is the operator's own, given on the command line (the container's own web server).
    request = urllib.request.Request(f"http://{address}/readyz?for={scope}", headers={"Host": probe_host()})
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_SECONDS) as response:  # noqa: S310 - as above
            return True, json.loads(response.read())
    except urllib.error.HTTPError as error:
        try:
            return False, json.loads(error.read())
        except ValueError:
            return False, {"status": "failing", "http_status": error.code}
    except (OSError, ValueError) as error:
        return False, {"status": "failing", "error": type(error).__name__}


def probe_host() -> str:
    """A Host header ALLOWED_HOSTS accepts: the first entry, a `.example.com` pattern as example.com, `*` as
    localhost. The web server then answers the probe as it answers users, with no exemption to keep."""
    first = next(iter(settings.ALLOWED_HOSTS), "localhost")
    if first == "*":
        return "localhost"
    return first.lstrip(".")
