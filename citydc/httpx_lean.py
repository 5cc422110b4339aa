"""httpx, imported without the two optional parts citydc never uses.

``import httpx`` also imports httpx's own command-line tool (``httpx._main``: click, rich and pygments,
about 90 ms) whenever those are installed, and they always are beside citydc; and httpcore, imported
when the first client is made, tries ``trio`` (about 0.12 s) whenever anything installed it (selenium
does, in the dev extra). citydc uses the synchronous client only, so neither is needed: both imports
are made to fail (httpx and httpcore fall back, as without them) for as long as httpx and httpcore
load, then allowed again, so another library of the same process can still import trio.
``citydc audit auth`` and ``audit sso`` start this much sooner (docs/sso-audit.md, "Performance").
"""

from __future__ import annotations

import sys
from types import ModuleType

from citydc.stand_ins import modules_replaced

__all__ = ["load"]

_SKIPPED = ("httpx._main", "trio")


def load() -> ModuleType:
    """Return the httpx module, importing it (and httpcore) the lean way on first use."""
    if "httpx" in sys.modules and "httpcore" in sys.modules:
        return sys.modules["httpx"]
    with modules_replaced(dict.fromkeys(_SKIPPED)):
        import httpcore  # noqa: F401  (httpx imports it only when a client is made: load it while trio is blocked)
        import httpx
    return httpx
