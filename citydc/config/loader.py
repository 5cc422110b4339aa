"""Load ``citydc.yaml``: YAML → typed models, with every error reported at once.

Errors carry the path inside the file (``devices[3].snmp_auth``) and the line it starts on,
and are collected from two passes that both always run: the structural validation by the
models (which also compiles regular expressions, makes every path absolute against the config
file's directory and checks that files citydc must read exist: ``citydc/config/paths.py``), and
the cross-references between sections (a device's site, SNMP profile and SNMP module must
exist). Nothing runs before the whole file is valid, and code after the load sees absolute paths.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from citydc.config.models import BUILTIN_SNMP_MODULES, CONFIG_PLATFORMS, Config
from citydc.secrets import SecretRef

__all__ = ["ConfigError", "ConfigInvalid", "LoadedConfig", "load", "load_data", "load_text"]


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
        """Given a path, return it absolute, relative paths taken relative to the config file.

        Paths inside ``config`` are already absolute (the loader resolved them), so this is only
        needed for a path from elsewhere, e.g. a command-line option meant relative to the config.
        """
        return p if p.is_absolute() else Path(os.path.normpath(self.base_dir / p))


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
# tools.* settings that existed before tools held only the programs citydc itself runs.
_REMOVED_TOOLS = {"snmpget", "snmpbulkwalk", "snmpd", "haproxy", "promtool", "ansible_playbook"}


def _pydantic_errors(exc: ValidationError) -> list[tuple[str, str]]:
    out = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = list(err["loc"])
        # The tag pydantic adds for a discriminated union (snmp_auth.<name>.<tag>, security_log.sink.<tag>)
        # is no key of the file; drop it there only, so a profile named "3" keeps its name.
        if len(loc) > 2 and (loc[0] == "snmp_auth" or loc[:2] == ["security_log", "sink"]) and loc[2] in _UNION_TAGS:
            del loc[2]
        msg = err["msg"]
        if err["type"] == "extra_forbidden" and len(loc) == 2 and loc[0] == "tools" and loc[1] in _REMOVED_TOOLS:
            msg = "no longer a setting: citydc does not run this program itself (the lab finds its own); remove it"
        elif err["type"] == "extra_forbidden":
            msg = "unknown key (not part of the schema; check its spelling)"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        if len(loc) >= 2 and loc[-1] == "[key]":  # a mapping key of the wrong type: name the key itself
            loc, msg = loc[:-1], f"key: {msg}"
            out.append((f"{format_loc(loc[:-1])}.{loc[-1]}" if len(loc) > 1 else str(loc[0]), msg))
            continue
        out.append((format_loc(loc), msg))
    return out


def _mapping(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _entries(value: Any) -> list[tuple[int, dict]]:
    """Given a raw list, return (index, item) for its mapping items; anything else gives none."""
    return [(i, v) for i, v in enumerate(value) if isinstance(v, dict)] if isinstance(value, list) else []


def _names(values: Iterable[Any]) -> str:
    return ", ".join(sorted(str(v) for v in values)) or "none"


def _cross_references(raw: Any) -> list[tuple[str, str]]:
    """Given the raw mapping, return errors in references between sections.

    Works on the raw data so it runs even when structural validation failed elsewhere. Any node
    may have any shape there (a mapping where a name belongs, a float where a list belongs), so
    only strings count as names and only lists and mappings are walked; a node of the wrong shape
    is reported by the structural pass, never by a crash here.
    """
    raw = _mapping(raw)
    errors: list[tuple[str, str]] = []

    def text(value: Any) -> str | None:
        return value if isinstance(value, str) else None

    sites = {sid for _, s in _entries(raw.get("sites")) if (sid := text(s.get("id")))}
    known_sites = _names(sites)

    def check_site(path: str, value: Any) -> None:
        if isinstance(value, str) and value not in sites:
            errors.append((path, f'unknown site "{value}" (known: {known_sites})'))

    def check_unique(key: str, entries: list[tuple[int, dict]], field: str, what: str) -> None:
        seen: dict[str, int] = {}
        for i, item in entries:
            value = text(item.get(field))
            if value is None:
                continue
            if value in seen:
                errors.append((f"{key}[{i}].{field}", f'duplicate {what} "{value}" (first at {key}[{seen[value]}])'))
            else:
                seen[value] = i

    devices = _entries(raw.get("devices"))
    check_unique("sites", _entries(raw.get("sites")), "id", "id")
    check_unique("devices", devices, "name", "name")
    check_unique("ldap", _entries(raw.get("ldap")), "name", "name")  # audit state and metrics are keyed by it
    profiles = {k for k in _mapping(raw.get("snmp_auth")) if isinstance(k, str)}
    modules = set(BUILTIN_SNMP_MODULES) | {k for k in _mapping(_mapping(raw.get("snmp")).get("modules"))
                                           if isinstance(k, str)}
    for i, dev in devices:
        check_site(f"devices[{i}].site", dev.get("site"))
        auth = dev.get("snmp_auth")
        if isinstance(auth, str) and auth not in profiles:
            known = ", ".join(sorted(profiles)) or "none defined"
            errors.append((f"devices[{i}].snmp_auth", f'unknown profile "{auth}" (known: {known})'))
        login = dev.get("login")
        logins = {k for k in _mapping(raw.get("device_logins")) if isinstance(k, str)}
        if isinstance(login, str) and login not in logins:
            errors.append((f"devices[{i}].login", f'unknown login profile "{login}" (known: {_names(logins)})'))
        dtype = dev.get("netmiko_device_type")
        if isinstance(login, str) and not dtype:
            errors.append((f"devices[{i}].netmiko_device_type",
                           "a device with a login needs its netmiko device type (e.g. cisco_ios)"))
        elif isinstance(login, str) and isinstance(dtype, str) and dtype not in CONFIG_PLATFORMS:
            errors.append((f"devices[{i}].netmiko_device_type",
                           f'no config backup rules for "{dtype}" (known: {_names(CONFIG_PLATFORMS)})'))
        module = dev.get("snmp_module")
        if isinstance(module, str) and module not in modules:
            errors.append((f"devices[{i}].snmp_module",
                           f'unknown SNMP module "{module}" (built in or in snmp.modules: {_names(modules)})'))
    for key in ("ldap", "sso"):
        for i, src in _entries(raw.get(key)):
            check_site(f"{key}[{i}].site", src.get("site"))
    netflow = _mapping(raw.get("netflow"))
    for i, lst in _entries(netflow.get("listeners")):
        check_site(f"netflow.listeners[{i}].site", lst.get("site"))
    by_name = {name: d for _, d in devices if (name := text(d.get("name")))}
    for i, exp in _entries(netflow.get("exporters")):
        name = text(exp.get("snmp_device"))
        if name is None:
            continue
        where = f"netflow.exporters[{i}].snmp_device"
        if name not in by_name:
            errors.append((where, f'unknown device "{name}" (known: {_names(by_name)})'))
        elif not by_name[name].get("snmp_auth"):
            errors.append((where, f'device "{name}" has no snmp_auth profile, so it cannot be polled'))
    jobs = _entries(_mapping(raw.get("backup")).get("jobs"))
    check_unique("backup.jobs", jobs, "name", "job name")
    for i, job in jobs:
        base = f"backup.jobs[{i}]"
        check_site(f"{base}.site", job.get("site"))
        for repo_key in ("local_repo", "offsite_repo"):
            check_site(f"{base}.{repo_key}.site", _mapping(job.get(repo_key)).get("site"))
        off_site, own_site = _mapping(job.get("offsite_repo")).get("site"), text(job.get("site"))
        if own_site is not None and off_site == own_site:
            errors.append((f"{base}.offsite_repo.site",
                           f'off-site repository is on the job\'s own site "{own_site}"; expected the other site'))
    report = _mapping(raw.get("report"))
    links = _entries(report.get("links"))
    check_unique("report.links", links, "name", "link name")
    for i, link in links:
        name = text(link.get("device"))
        if name is not None and name not in by_name:
            errors.append((f"report.links[{i}].device", f'unknown device "{name}" (known: {_names(by_name)})'))
    agencies = {name for _, a in _entries(netflow.get("agencies")) if (name := text(a.get("name")))}
    report_agencies = _entries(report.get("agencies"))
    check_unique("report.agencies", report_agencies, "name", "agency")
    for i, agency in report_agencies:
        name = text(agency.get("name"))
        if name is not None and name not in agencies:
            errors.append((f"report.agencies[{i}].name",
                           f'unknown agency "{name}" (netflow.agencies: {_names(agencies)})'))
    report_sites = _entries(report.get("sites"))
    check_unique("report.sites", report_sites, "id", "site")
    for i, site in report_sites:
        check_site(f"report.sites[{i}].id", site.get("id"))
    errors.extend(_alerting_references(_mapping(raw.get("alerting")), check_site))
    return errors


def _alerting_references(alerting: dict, check_site: Any) -> list[tuple[str, str]]:
    """Given the raw alerting section, return errors in its receiver and site references."""
    errors: list[tuple[str, str]] = []
    receivers = _entries(alerting.get("receivers"))
    seen: dict[str, int] = {}
    for i, rec in receivers:
        name = rec.get("name")
        if isinstance(name, str):
            if name in seen:
                errors.append((f"alerting.receivers[{i}].name",
                               f'duplicate receiver "{name}" (first at alerting.receivers[{seen[name]}])'))
            seen.setdefault(name, i)
    known = _names(seen) if seen else "none defined"
    default = alerting.get("default_receiver")
    if receivers and default is None:
        errors.append(("alerting.default_receiver", "required when receivers are given (alerts no route matches)"))
    if isinstance(default, str) and default not in seen:
        errors.append(("alerting.default_receiver", f'unknown receiver "{default}" (known: {known})'))
    for i, route in _entries(alerting.get("routes")):
        name = route.get("receiver")
        if isinstance(name, str) and name not in seen:
            errors.append((f"alerting.routes[{i}].receiver", f'unknown receiver "{name}" (known: {known})'))
        sites = route.get("sites")
        for k, site in enumerate(sites if isinstance(sites, list) else []):
            check_site(f"alerting.routes[{i}].sites[{k}]", site)
    check_site("alerting.home_site", alerting.get("home_site"))
    return errors


def load_data(raw: Any, filename: str = "citydc.yaml", *, base_dir: Path | None = None, check_files: bool = True,
              lines: dict[str, int] | None = None) -> Config:
    """Given parsed YAML data, return the validated Config with every path absolute.

    Relative paths are taken relative to ``base_dir`` (the config file's directory; the working
    directory when None). With ``check_files``, files that must exist (``ca_file``, ``ssh_config``)
    are checked. Raise ConfigInvalid with every error, each with its path (and line, from ``lines``).
    """
    if raw is None:
        raw = {}
    found: list[tuple[str, str]] = []
    config = None
    if not isinstance(raw, dict):
        found.append(("", f"expected a mapping at the top of the file, got {type(raw).__name__}"))
    else:
        context = {"base_dir": Path.cwd() if base_dir is None else base_dir, "check_files": check_files}
        try:
            config = Config.model_validate(raw, context=context)
        except ValidationError as exc:
            found.extend(_pydantic_errors(exc))
        found.extend(_cross_references(raw))
    if found or config is None:
        unique = list(dict.fromkeys(found))
        raise ConfigInvalid(filename, [ConfigError(p, m, _line_for(lines or {}, p)) for p, m in unique])
    return config


def load_text(text: str, filename: str = "citydc.yaml", *, base_dir: Path | None = None,
              check_files: bool = True) -> Config:
    """Given YAML text, return the validated Config (see load_data). Raise ConfigInvalid with every error."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigInvalid(filename, [ConfigError("", f"not valid YAML: {problem}",
                                                   mark.line + 1 if mark else None)]) from None
    return load_data(raw, filename, base_dir=base_dir, check_files=check_files, lines=dict(_line_index(node)))


def load(path: str | Path, *, check_files: bool = True) -> LoadedConfig:
    """Given a path, return the LoadedConfig, every relative path in it made absolute against the
    file's directory. Raise ConfigInvalid (unreadable file included)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigInvalid(str(path), [ConfigError("", f"cannot read: {exc.strerror}")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigInvalid(str(path), [ConfigError("", f"not UTF-8 text: {exc.reason} at byte {exc.start}")]) from None
    absolute = path.resolve()
    return LoadedConfig(load_text(text, str(path), base_dir=absolute.parent, check_files=check_files), absolute)


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
