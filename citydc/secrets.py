"""Secrets by reference.

A secret in ``citydc.yaml`` is never written inline: it is ``env:NAME`` (read from the
environment) or ``file:PATH`` (first line of a file; a relative PATH is relative to the config
file, made absolute when the config is loaded). The reference is harmless and may be shown;
the value is resolved only at the moment of use, and the object holding it never prints it
(``repr``, ``str``, ``model_dump`` and JSON all show the reference).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

__all__ = ["SecretRef", "SecretUnavailable"]


class SecretUnavailable(RuntimeError):
    """The reference points at nothing (unset variable, unreadable file). Never holds the value."""


@dataclass(frozen=True, slots=True)
class SecretRef:
    """A reference to a secret: ``env:NAME`` or ``file:PATH``."""

    scheme: str
    target: str

    @classmethod
    def parse(cls, text: str) -> SecretRef:
        """Given ``env:NAME`` or ``file:PATH``, return the reference. Raise ValueError otherwise.

        The error message never repeats the text, because a user who pasted the password
        itself would otherwise see it echoed in logs.
        """
        scheme, sep, target = text.partition(":")
        if not sep or scheme not in ("env", "file") or not target:
            raise ValueError(
                "expected a secret reference 'env:NAME' or 'file:PATH' "
                "(secrets are never written inline in the config)"
            )
        if scheme == "env" and not (target.isascii() and target.replace("_", "a").isalnum()):
            raise ValueError("expected an environment variable name after 'env:' (letters, digits, _)")
        if "\x00" in target:
            raise ValueError("expected a file path after 'file:' (it contains a NUL byte)")
        return cls(scheme, target)

    def relative_to(self, base_dir: Path | str | None) -> SecretRef:
        """Given the config file's directory, return this reference with a relative ``file:`` path made
        absolute against it (the project's path rule); ``env:`` and absolute references are returned as is."""
        if self.scheme != "file" or base_dir is None or os.path.isabs(self.target):
            return self
        return SecretRef("file", os.path.normpath(os.path.join(base_dir, self.target)))

    @property
    def reference(self) -> str:
        return f"{self.scheme}:{self.target}"

    def reveal(self, environ: os._Environ[str] | dict[str, str] | None = None) -> str:
        """Return the secret's value. Raise SecretUnavailable if it cannot be read."""
        if self.scheme == "env":
            env = os.environ if environ is None else environ
            value = env.get(self.target)
            if value is None:
                raise SecretUnavailable(f"environment variable {self.target} is not set")
            return value
        try:
            text = Path(self.target).read_text(encoding="utf-8")
        except OSError as exc:
            raise SecretUnavailable(f"cannot read secret file {self.target}: {exc.strerror}") from None
        return text.splitlines()[0] if text else ""

    def file_problem(self) -> str | None:
        """For a ``file:`` reference, return what is wrong with the file without reading it (missing,
        not a regular file, any access for others, write access for the group), else None. Group
        read is allowed: a dedicated group is how a service user gets a root-owned secret."""
        if self.scheme != "file":
            return None
        try:
            st = Path(self.target).stat()
        except OSError as exc:
            return f"{self.target}: {exc.strerror}"
        except ValueError:  # cannot happen for a parsed reference; a hand-made one is still not a crash
            return f"{self.target!r}: not a usable path"
        if not stat.S_ISREG(st.st_mode):
            return f"{self.target}: not a regular file"
        if st.st_mode & 0o027:
            return (f"{self.target}: mode {stat.S_IMODE(st.st_mode):04o} gives others access or the group write "
                    "access; chmod 600 (or 640 with a dedicated group)")
        return None

    def file_path(self) -> Path | None:
        """Return the file holding the secret for ``file:`` references (tools can read it themselves)."""
        return Path(self.target) if self.scheme == "file" else None

    def __repr__(self) -> str:
        return f"SecretRef({self.reference!r})"

    __str__ = __repr__

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        def validate(value: Any, info: core_schema.ValidationInfo) -> SecretRef:
            if isinstance(value, SecretRef):
                ref = value
            elif isinstance(value, str):
                ref = cls.parse(value)
            else:
                raise ValueError("expected a secret reference string 'env:NAME' or 'file:PATH'")
            # The loader passes the config's directory; outside it (models built in code) paths stay as given.
            context = info.context if isinstance(info.context, dict) else {}
            return ref.relative_to(context.get("base_dir"))

        return core_schema.with_info_plain_validator_function(
            validate,
            serialization=core_schema.plain_serializer_function_ser_schema(lambda v: v.reference),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": "string", "pattern": r"^(env:[A-Za-z0-9_]+|file:.+)$",
                "description": "secret reference: env:NAME or file:PATH"}
