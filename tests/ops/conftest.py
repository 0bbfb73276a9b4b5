"""Fixtures of the ops tests."""

from tests.ops.browser import browser

__all__ = ["browser"]
