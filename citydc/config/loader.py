"""Load ``citydc.yaml``: YAML → typed models, with every error reported at once.

Errors carry the path inside the file (``devices[3].snmp_auth``) and the line it starts on,
and are collected from two passes that both always run: the structural validation by the
models, and the cross-references between sections (a device's site and SNMP profile must
exist). Nothing runs before the whole file is valid.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from citydc.config.models import Config
from citydc.secrets import SecretRef

__all__ = ["ConfigError", "ConfigInvalid", "LoadedConfig", "load", "load_text"]


@dataclass(frozen=True)
class ConfigError:
    path: str
    message: str
    line: int | None = None

    def format(self, filename: str) -> str:
        where = f"{filename}:{self.line}" if self.line else filename
        return f"{where}: {self.path or '<top>'}: {self.message}"


class ConfigInvalid(Exception):
    """The config file is wrong; holds every error found, never secret values."""

    def __init__(self, filename: str, errors: list[ConfigError]):
        self.filename = filename
        self.errors = errors
        super().__init__("\n".join(e.format(filename) for e in errors))


@dataclass(frozen=True)
class LoadedConfig:
    config: Config
    path: Path

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def resolve(self, p: Path) -> Path:
        """Given a path from the config, return it absolute (relative paths are to the config file)."""
        return p if p.is_absolute() else (self.base_dir / p).resolve()


def format_loc(loc: Iterable[Any]) -> str:
    """Given a pydantic ``loc`` tuple, return ``devices[3].snmp_auth``.

    Discriminated unions add the tag as a path element (``sink.sqlite.path``); those tags are
    not keys of the file, so they are dropped when the next element is a plain field.
    """
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _line_index(node: yaml.Node | None, prefix: str = "") -> Iterator[tuple[str, int]]:
    """Yield (path, 1-based line) for every node of a composed YAML document."""
    if node is None:
        return
    yield prefix, node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            name = str(key.value)
            path = f"{prefix}.{name}" if prefix else name
            yield path, key.start_mark.line + 1
            yield from (item for item in _line_index(value, path) if item[0] != path)
    elif isinstance(node, yaml.SequenceNode):
        for i, value in enumerate(node.value):
            yield from _line_index(value, f"{prefix}[{i}]")


def _line_for(lines: dict[str, int], path: str) -> int | None:
    """Return the line of ``path`` or of its nearest ancestor present in the file."""
    while path:
        if path in lines:
            return lines[path]
        cut = max(path.rfind("."), path.rfind("["))
        path = path[:cut] if cut > 0 else ""
    return None


_UNION_TAGS = {"SnmpV2c", "SnmpV3", "sqlite", "elasticsearch", "2c", "3"}


def _pydantic_errors(exc: ValidationError) -> list[tuple[str, str]]:
    out = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = [p for p in err["loc"] if not (isinstance(p, str) and p in _UNION_TAGS)]
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (not part of the schema; check its spelling)"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        out.append((format_loc(loc), msg))
    return out


def _cross_references(raw: Any) -> list[tuple[str, str]]:
    """Given the raw mapping, return errors in references between sections.

    Works on the raw data so it runs even when structural validation failed elsewhere.
    """
    if not isinstance(raw, dict):
        return []
    errors: list[tuple[str, str]] = []

    def items(key: str) -> list[tuple[int, dict]]:
        seq = raw.get(key)
        return [(i, v) for i, v in enumerate(seq) if isinstance(v, dict)] if isinstance(seq, list) else []

    sites = {s.get("id") for _, s in items("sites")}
    known_sites = ", ".join(sorted(str(s) for s in sites if s)) or "none"

    def check_site(path: str, value: Any) -> None:
        if isinstance(value, str) and value not in sites:
            errors.append((path, f'unknown site "{value}" (known: {known_sites})'))

    def check_unique(key: str, field: str) -> None:
        seen: dict[Any, int] = {}
        for i, item in items(key):
            value = item.get(field)
            if value in seen:
                errors.append((f"{key}[{i}].{field}", f'duplicate {field} "{value}" (first at {key}[{seen[value]}])'))
            elif value is not None:
                seen[value] = i

    check_unique("sites", "id")
    check_unique("devices", "name")
    check_unique("ldap", "name")  # audit state, metrics and `--source` are keyed by the source name
    profiles = raw.get("snmp_auth") if isinstance(raw.get("snmp_auth"), dict) else {}
    for i, dev in items("devices"):
        check_site(f"devices[{i}].site", dev.get("site"))
        auth = dev.get("snmp_auth")
        if isinstance(auth, str) and auth not in profiles:
            known = ", ".join(sorted(profiles)) or "none defined"
            errors.append((f"devices[{i}].snmp_auth", f'unknown profile "{auth}" (known: {known})'))
    for section, key in (("ldap", "ldap"), ("sso", "sso")):
        for i, src in items(key):
            check_site(f"{section}[{i}].site", src.get("site"))
    netflow = raw.get("netflow") if isinstance(raw.get("netflow"), dict) else {}
    for i, lst in enumerate(netflow.get("listeners") or []):
        if isinstance(lst, dict):
            check_site(f"netflow.listeners[{i}].site", lst.get("site"))
    devices = {d.get("name"): d for _, d in items("devices")}
    for i, exp in enumerate(netflow.get("exporters") or []):
        name = exp.get("snmp_device") if isinstance(exp, dict) else None
        if not isinstance(name, str):
            continue
        where = f"netflow.exporters[{i}].snmp_device"
        if name not in devices:
            known = ", ".join(sorted(str(n) for n in devices if n)) or "none"
            errors.append((where, f'unknown device "{name}" (known: {known})'))
        elif not devices[name].get("snmp_auth"):
            errors.append((where, f'device "{name}" has no snmp_auth profile, so it cannot be polled'))
    backup = raw.get("backup") if isinstance(raw.get("backup"), dict) else {}
    seen_jobs: dict[Any, int] = {}
    for i, job in enumerate(backup.get("jobs") or []):
        if not isinstance(job, dict):
            continue
        base = f"backup.jobs[{i}]"
        if job.get("name") in seen_jobs:
            errors.append((f"{base}.name", f'duplicate job name "{job.get("name")}"'))
        seen_jobs.setdefault(job.get("name"), i)
        check_site(f"{base}.site", job.get("site"))
        for repo_key in ("local_repo", "offsite_repo"):
            repo = job.get(repo_key)
            if isinstance(repo, dict):
                check_site(f"{base}.{repo_key}.site", repo.get("site"))
        off = job.get("offsite_repo")
        if isinstance(off, dict) and off.get("site") is not None and off.get("site") == job.get("site"):
            errors.append((f"{base}.offsite_repo.site",
                           f'off-site repository is on the job\'s own site "{job.get("site")}"; '
                           "expected the other site"))
    return errors


def load_text(text: str, filename: str = "citydc.yaml") -> Config:
    """Given YAML text, return the validated Config. Raise ConfigInvalid with every error."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigInvalid(filename, [ConfigError("", f"not valid YAML: {problem}",
                                                   mark.line + 1 if mark else None)]) from None
    if raw is None:
        raw = {}
    lines = dict(_line_index(node))
    found: list[tuple[str, str]] = []
    config = None
    if not isinstance(raw, dict):
        found.append(("", f"expected a mapping at the top of the file, got {type(raw).__name__}"))
    else:
        try:
            config = Config.model_validate(raw)
        except ValidationError as exc:
            found.extend(_pydantic_errors(exc))
        found.extend(_cross_references(raw))
    if found or config is None:
        unique = list(dict.fromkeys(found))
        raise ConfigInvalid(filename, [ConfigError(p, m, _line_for(lines, p)) for p, m in unique])
    return config


def load(path: str | Path) -> LoadedConfig:
    """Given a path, return the LoadedConfig. Raise ConfigInvalid (unreadable file included)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigInvalid(str(path), [ConfigError("", f"cannot read: {exc.strerror}")]) from None
    return LoadedConfig(load_text(text, str(path)), path.resolve())


def secret_refs(node: Any, path: str = "") -> Iterator[tuple[str, SecretRef]]:
    """Given a config (or any part of it), yield (path, reference) for every secret reference in it,
    paths written as in error messages (``snmp_auth.core-v3.auth_key``)."""
    if isinstance(node, SecretRef):
        yield path, node
    elif isinstance(node, BaseModel):
        for name in type(node).model_fields:
            yield from secret_refs(getattr(node, name), f"{path}.{name}" if path else name)
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from secret_refs(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list | tuple):
        for i, value in enumerate(node):
            yield from secret_refs(value, f"{path}[{i}]")
