"""Shared fixtures of the CLI tests."""

from __future__ import annotations

import pytest

from citydc.cli import timefmt


@pytest.fixture(autouse=True)
def _default_zone():
    yield
    timefmt.set_zone(None)  # a command sets the display zone for the process: leave the default behind
