"""Shared fixtures. Lab services are started once per session and left running for other tests;
`.ci/run` (and `citydc lab down`) stops them. A service that cannot start makes its tests fail."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from citydc.lab import ports, registry
from citydc.lab.base import LabContext


@pytest.fixture(scope="session")
def lab_ctx() -> LabContext:
    return LabContext()


@pytest.fixture(scope="module", autouse=True)
def _environ_restored() -> Iterator[None]:
    """Undo whatever a test module's tests and fixtures (module-scoped ones included) put into os.environ.

    Module scope, so a module-scoped fixture's variables last for its module's tests, then go; autouse
    fixtures are set up first and torn down last, so this restores after every fixture of the module.
    """
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="module")
def lab_env() -> dict[str, str]:
    """The lab's credentials in the environment, as the demo sets them (example config uses env: refs).

    For the requesting module only: ``_environ_restored`` removes them afterwards.
    """
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


@pytest.fixture(scope="session")
def keycloak(lab_ctx: LabContext) -> dict[str, str]:
    """The lab Keycloak (and the slapd it federates to), started once per session, only for tests that ask.

    Its first start on a fresh machine downloads the distribution (docs/sso-audit.md has the times).
    """
    (status,) = registry.up(lab_ctx, ["keycloak"])
    assert status.running, status
    return status.endpoints
