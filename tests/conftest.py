"""Shared fixtures. Lab services are started once per session and left running for other tests;
`.ci/run` (and `citydc lab down`) stops them. A service that cannot start makes its tests fail."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from citydc.lab import ports, registry
from citydc.lab.base import LabContext


@pytest.fixture(scope="session")
def lab_ctx() -> LabContext:
    return LabContext()


@pytest.fixture(scope="session")
def lab_env() -> dict[str, str]:
    """The lab's credentials in the environment, as the demo sets them (example config uses env: refs)."""
    for name, value in ports.LAB_ENV.items():
        os.environ.setdefault(name, value)
    return dict(ports.LAB_ENV)


@pytest.fixture(scope="session")
def lab_up(lab_ctx: LabContext) -> Callable[..., list[registry.ServiceStatus]]:
    """Return a function that starts lab services by name (idempotent) and returns their status.

    Errors propagate: a missing service fails the test instead of skipping it.
    """

    def start(*names: str) -> list[registry.ServiceStatus]:
        return registry.up(lab_ctx, list(names))

    return start
