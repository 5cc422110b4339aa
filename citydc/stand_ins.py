"""Stand-ins in ``sys.modules`` for the length of some imports (citydc.httpx_lean, citydc.play.runner)."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import ModuleType

__all__ = ["modules_replaced"]


@contextmanager
def modules_replaced(stand_ins: Mapping[str, ModuleType | None]) -> Iterator[None]:
    """Inside: each named module not loaded yet is its stand-in (None: importing it raises ImportError).

    At the end each stand-in still in place is removed, so a later import of that name gets the real module;
    names already loaded are left alone.
    """
    placed = {name: module for name, module in stand_ins.items() if name not in sys.modules}
    sys.modules.update(placed)  # type: ignore[arg-type]
    try:
        yield
    finally:
        for name, module in placed.items():
            if name in sys.modules and sys.modules[name] is module:
                del sys.modules[name]
