"""Paths in ``citydc.yaml``: one rule, applied once, while the file is validated.

The rule: **a relative path is relative to the directory of the config file**, for every path
field (state and spool directories, backup sources, ``ssh_config``, ``ca_file``, SSO logs, local
restic repositories, ``file:`` secrets, tool paths that contain a ``/``). The loader passes the
config's directory in the pydantic validation context (``{"base_dir": ..., "check_files": ...}``);
the annotated types below make every such path absolute, and check at load the files that must
already exist. A model built in Python without that context keeps its paths as given.

Only files that citydc reads and cannot create must exist at load (``ExistingFile``: ``ca_file``,
``ssh_config``). Directories citydc creates (state, spool, textfile) need not, and neither do
backup sources (restic reports a missing one at run time, as a failed step) or SSO logs (rotated).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, Field, ValidationInfo

__all__ = ["ConfigPath", "ExistingFile", "Program", "base_dir_of", "resolve_text"]

RELATIVE_HINT = "relative paths are relative to the config file"


def base_dir_of(info: ValidationInfo) -> Path | None:
    """Given a validator's info, return the config's directory from the context (None outside the loader)."""
    context = info.context if isinstance(info.context, dict) else {}
    base = context.get("base_dir")
    return Path(base) if base is not None else None


def resolve_text(text: str, base: Path | None) -> str:
    """Given a path as text and the config's directory, return it absolute (unchanged if already absolute).

    Lexical only (``os.path.normpath``): no file system access, so a strange value cannot fail here.
    """
    if base is None or os.path.isabs(text):
        return text
    return os.path.normpath(os.path.join(base, text))


def _resolve(value: Path, info: ValidationInfo) -> Path:
    return Path(resolve_text(str(value), base_dir_of(info)))


def _existing_file(value: Path, info: ValidationInfo) -> Path:
    given = str(value)
    resolved = _resolve(value, info)
    context = info.context if isinstance(info.context, dict) else {}
    if base_dir_of(info) is None or not context.get("check_files", True):
        return resolved
    hint = "" if os.path.isabs(given) else f" ({RELATIVE_HINT})"
    try:
        mode = os.stat(resolved).st_mode
    except FileNotFoundError:
        raise ValueError(f"file not found: {resolved}{hint}") from None
    except OSError as exc:
        raise ValueError(f"cannot access {resolved}: {exc.strerror}{hint}") from None
    except ValueError:  # an embedded NUL byte
        raise ValueError("not a usable path (it contains a NUL byte)") from None
    if not stat.S_ISREG(mode):
        raise ValueError(f"not a regular file: {resolved}")
    return resolved


def _program(value: str, info: ValidationInfo) -> str:
    # A bare name is looked up in PATH when it runs; a path with a slash follows the path rule.
    return resolve_text(value, base_dir_of(info)) if "/" in value else value


def _no_nul(value: Any) -> Any:
    if "\x00" in str(value):
        raise ValueError("not a usable path (it contains a NUL byte)")
    return value


ConfigPath = Annotated[Path, AfterValidator(_no_nul), AfterValidator(_resolve)]
"""A path, made absolute against the config's directory; it need not exist (created or checked later)."""

ExistingFile = Annotated[Path, AfterValidator(_no_nul), AfterValidator(_existing_file)]
"""A file citydc reads and cannot create: made absolute, and it must exist at load."""

Program = Annotated[str, Field(min_length=1), AfterValidator(_no_nul), AfterValidator(_program)]
"""An external program: a name looked up in PATH, or a path (relative ones follow the path rule)."""
