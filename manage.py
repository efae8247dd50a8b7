#!/usr/bin/env python
import os
import sys
from pathlib import Path

# `make run` writes this file (DEBUG=true) on its first run, so that the README's `manage.py` commands use the
# same development settings in this checkout. Variables already set in the environment win; delete the file (or
# set DEBUG=false) to run manage.py with production settings here.
DEVELOPMENT_ENV = Path(__file__).resolve().parent / "var" / "development.env"


def load_development_env(path: Path = DEVELOPMENT_ENV) -> None:
    if not path.is_file():
        return
    for line in path.read_text().splitlines():
        name, equals, value = line.strip().partition("=")
        if equals and name and not name.startswith("#"):
            os.environ.setdefault(name.strip(), value.strip())


def main() -> None:
    load_development_env()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
