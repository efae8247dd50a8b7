"""Fixtures shared by the domain's tests."""

from tests.support.api import api  # noqa: F401 (a fixture, used by name)
