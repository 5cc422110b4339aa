"""Load ``citydc.yaml``: YAML → typed models, with every error reported at once.

Errors carry the path inside the file (``devices[3].snmp_auth``) and the line it starts on,
and are collected from two passes that both always run: the structural validation by the
models (which also compiles regular expressions, makes every path absolute against the config
file's directory and checks that files citydc must read exist: ``citydc/config/paths.py``), and
the cross-references between sections (a device's site, SNMP profile and SNMP module must
exist). Nothing runs before the whole file is valid, and code after the load sees absolute paths.
"""

from __future__ import annotations

import datetime
import difflib
import os
import re
import stat
import typing
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from citydc.config.models import BUILTIN_SNMP_MODULES, CONFIG_PLATFORMS, Config, repository_key
from citydc.secrets import SecretRef

__all__ = ["ConfigError", "ConfigInvalid", "LoadedConfig", "load", "load_data", "load_text", "read_yaml"]


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


def _line_index(node: yaml.Node | None, prefix: str = "",
                where: dict[int, str] | None = None) -> Iterator[tuple[str, int]]:
    """Yield (path, 1-based line) for every node of a composed YAML document.

    With ``where``, also record the first path of every node (by identity) in it. The graph must
    have passed _graph_problem: an alias is walked again at each of its uses, which that bounds.
    """
    if node is None:
        return
    if where is not None:
        where.setdefault(id(node), prefix)
    yield prefix, node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            name = str(key.value)
            path = f"{prefix}.{name}" if prefix else name
            yield path, key.start_mark.line + 1
            yield from (item for item in _line_index(value, path, where) if item[0] != path)
    elif isinstance(node, yaml.SequenceNode):
        for i, value in enumerate(node.value):
            yield from _line_index(value, f"{prefix}[{i}]", where)


# -- reading the YAML: bounded, every problem an error with its line, no text of the file echoed ----

# Far above any real citydc.yaml, far below what costs noticeable time or memory: PyYAML composes
# nesting recursively, and an alias copies its whole anchored value at every use (a 300-byte
# "billion laughs" file of nested aliases expands to millions of values).
MAX_DEPTH = 100
MAX_ALIAS_VALUES = 100_000


class _YamlRefused(Exception):
    """The YAML is well formed but refused; ``message`` names what, ``mark`` where."""

    def __init__(self, message: str, mark: yaml.Mark | None):
        super().__init__(message)
        self.message, self.mark = message, mark


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses deep nesting while composing and records duplicate mapping keys.

    Duplicates are collected, not raised, so they are reported with every other error of the file.
    """

    def __init__(self, stream: str):
        super().__init__(stream)
        self.depth = 0
        self.current: yaml.Node | None = None  # the node being constructed, for errors without a mark
        self.duplicates: list[tuple[yaml.MappingNode, yaml.Node, yaml.Node]] = []  # (mapping, key, first key)

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise _YamlRefused(f"nesting too deep (more than {MAX_DEPTH} levels)", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        self.current = node
        return super().construct_object(node, deep)

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict:
        if isinstance(node, yaml.MappingNode):
            self._record_duplicates(node)
        return super().construct_mapping(node, deep)

    def _record_duplicates(self, node: yaml.MappingNode) -> None:
        # Only keys written in this mapping: a key brought in by a merge (<<: *base) may be overridden.
        first: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)  # 1 and 0x1 are one key, as in the dict built
            if key in first:
                self.duplicates.append((node, key_node, first[key]))
            else:
                first[key] = key_node


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []


def _check_graph(root: yaml.Node) -> None:
    """Given a composed document, raise _YamlRefused if aliases make it recursive, too deep or too big.

    One walk over the distinct nodes (an alias is the anchored node itself, reached again), without
    recursion: a node reached while its own walk is still open contains itself; each further use of
    a finished node adds its expanded size and depth to its parent's.
    """
    size: dict[int, int] = {}  # values in the expansion of a finished node (capped: only the bound matters)
    depth: dict[int, int] = {}
    added = 0  # values the aliases add beyond those written out
    stack: list[tuple[yaml.Node, yaml.Node | None, bool]] = [(root, None, False)]
    open_nodes: set[int] = set()
    while stack:
        node, parent, done = stack.pop()
        key = id(node)
        if done:
            open_nodes.discard(key)
            kids = _children(node)
            size[key] = min(1 + sum(size[id(k)] for k in kids), 2 * MAX_ALIAS_VALUES)
            depth[key] = 1 + max((depth[id(k)] for k in kids), default=0)
            if depth[key] > MAX_DEPTH:
                raise _YamlRefused(f"nesting too deep through aliases (more than {MAX_DEPTH} levels)",
                                   node.start_mark)
        elif key in open_nodes:
            raise _YamlRefused("recursive alias: this value contains an alias to itself", node.start_mark)
        elif key in size:
            added += size[key]
            if added > MAX_ALIAS_VALUES:
                raise _YamlRefused(f"the document expands to too many values through aliases (more than "
                                   f"{MAX_ALIAS_VALUES:,} added; each alias copies its whole anchored value)",
                                   (parent or node).start_mark)
        else:
            open_nodes.add(key)
            stack.append((node, parent, True))
            stack.extend((child, node, False) for child in reversed(_children(node)))


# PyYAML's problem texts that quote the file (an alias, tag or anchor name, which may be the start of
# an unquoted secret), each replaced by what it means.
_QUOTING_PROBLEMS = (
    ("found undefined alias", "undefined alias (an unquoted value starting with * names an &anchor; "
                              "quote the value if it is text)"),
    ("could not determine a constructor for the tag", "unknown tag (an unquoted value starting with ! "
                                                      "is a YAML tag; quote the value if it is text)"),
    ("found undefined tag handle", "undefined tag handle (an unquoted value starting with ! is a YAML tag; "
                                   "quote the value if it is text)"),
    ("found duplicate anchor", "duplicate anchor (an &anchor name given twice)"),
)
# Anything else quoted in a problem: kept when it is one character ('\t') or a token kind ('<scalar>').
_QUOTED = re.compile(r"""\s*('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")""")


def _harmless(quoted: str) -> bool:
    inner = quoted.strip()[1:-1]
    return len(inner) <= 4 or re.fullmatch(r"<[a-z ]+>", inner) is not None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """Given a PyYAML error, return what is wrong without any text of the file (it may hold a secret)."""
    problem = getattr(exc, "problem", None)
    context = getattr(exc, "context", None)
    for text in (context, problem):
        for start, meaning in _QUOTING_PROBLEMS:
            if text and text.startswith(start):
                return meaning
    if not isinstance(exc, yaml.MarkedYAMLError):  # a ReaderError: a character code and a position only
        return str(exc).splitlines()[0]
    # str(exc) of a marked error quotes the line of the file, so only the problem text is used.
    problem = problem or context or "cannot be parsed"
    return _QUOTED.sub(lambda m: m.group(0) if _harmless(m.group(1)) else "", problem)


def _where(mark: yaml.Mark | None) -> tuple[str, int | None]:
    return (f" at column {mark.column + 1}" if mark else ""), (mark.line + 1 if mark else None)


def _mark_at(text: str, index: int) -> yaml.Mark:
    """Given text and an index into it, return the mark (0-based line and column) of that character."""
    line_start = text.rfind("\n", 0, index) + 1
    return yaml.Mark("<config>", index, text.count("\n", 0, index), index - line_start, None, None)


def _yaml_error(filename: str, message: str, mark: yaml.Mark | None) -> ConfigInvalid:
    column, line = _where(mark)
    return ConfigInvalid(filename, [ConfigError("", f"not valid YAML{column}: {message}", line)])


def read_yaml(text: str, filename: str) -> tuple[Any, dict[str, int], list[ConfigError]]:
    """Given YAML text, return (data, {path: line}, duplicate-key errors). Raise ConfigInvalid if it
    cannot be read, or aliases or nesting make it recursive, too deep or too big."""
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:  # the reader checks every character up front: a control character, NUL
        raise _yaml_error(filename, _yaml_problem(exc), _mark_at(text, exc.position)) from None
    try:
        try:
            node = loader.get_single_node()
            if node is None:
                return None, {}, []
            _check_graph(node)
            where: dict[int, str] = {}
            lines = dict(_line_index(node, "", where))
            raw = loader.construct_document(node)
        except yaml.YAMLError as exc:
            raise _yaml_error(filename, _yaml_problem(exc), getattr(exc, "problem_mark", None)) from None
        except _YamlRefused as exc:
            raise _yaml_error(filename, exc.message, exc.mark) from None
        except RecursionError:  # a guard behind MAX_DEPTH: PyYAML composes and constructs recursively
            raise _yaml_error(filename, f"nesting too deep (more than {MAX_DEPTH} levels)", None) from None
        except (ValueError, TypeError, ArithmeticError, LookupError, AttributeError):
            # A value of an explicit or implicit type that is no such value: 2026-13-45 (a date), !!int abc,
            # an empty !!int or !!timestamp (PyYAML indexes or matches it unchecked). The exception's text
            # would quote the value.
            mark = loader.current.start_mark if loader.current is not None else None
            raise _yaml_error(filename, "a value cannot be read as its type (a date such as 2026-13-45, "
                                        "or a !!tag); quote it if it is text", mark) from None
    finally:
        loader.dispose()
    duplicates = [ConfigError(_key_path(where.get(id(mapping), ""), key),
                              f"duplicate key (first at line {first.start_mark.line + 1})", key.start_mark.line + 1)
                  for mapping, key, first in sorted(loader.duplicates, key=lambda d: d[1].start_mark.index)]
    return raw, lines, duplicates


def _key_path(prefix: str, key: yaml.Node) -> str:
    name = str(key.value)
    return f"{prefix}.{name}" if prefix else name


def _line_for(lines: dict[str, int], path: str) -> int | None:
    """Return the line of ``path`` or of its nearest ancestor present in the file."""
    while path:
        if path in lines:
            return lines[path]
        cut = max(path.rfind("."), path.rfind("["))
        path = path[:cut] if cut > 0 else ""
    return None


_UNION_TAGS = {"SnmpV2c", "SnmpV3", "sqlite", "elasticsearch", "2c", "3", "log", "keycloak"}
# tools.* settings that existed before tools held only the programs citydc itself runs.
_REMOVED_TOOLS = {"snmpget", "snmpbulkwalk", "snmpd", "haproxy", "promtool", "ansible_playbook"}


def _pydantic_errors(exc: ValidationError) -> list[tuple[str, str]]:
    out = []
    # The input is kept for its type only (_expected_text); no message quotes it, as it may be a secret.
    for err in exc.errors(include_url=False):
        loc = list(err["loc"])
        # The tag pydantic adds for a discriminated union (snmp_auth.<name>.<tag>, security_log.sink.<tag>,
        # sso[i].<tag>) is no key of the file; drop it there only, so a profile named "3" keeps its name.
        if len(loc) > 2 and (loc[0] in ("snmp_auth", "sso") or loc[:2] == ["security_log", "sink"]) \
                and loc[2] in _UNION_TAGS:
            del loc[2]
        msg = err["msg"]
        if err["type"] == "extra_forbidden" and len(loc) == 2 and loc[0] == "tools" and loc[1] in _REMOVED_TOOLS:
            msg = "no longer a setting: citydc does not run this program itself (the lab finds its own); remove it"
        elif err["type"] == "extra_forbidden":
            msg = "unknown key (not part of the schema; check its spelling)" + _did_you_mean(loc)
        elif err["type"] == "string_type" and loc[-1:] != ["[key]"]:
            msg = _expected_text(err.get("input")) or msg
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            out.append(_union_tag_error(loc, err))
            continue
        if err["type"] == "invalid_key" and loc:  # a key that is no text, at the top of the file
            out.append((_key_loc(loc[:-1], loc[-1]), _not_text_key(loc[-1])))
            continue
        if len(loc) >= 2 and loc[-1] == "[key]":  # a mapping key of the wrong type: name the key itself
            loc = loc[:-1]
            msg = _not_text_key(loc[-1]) if err["type"] == "string_type" else f"key: {msg}"
            out.append((_key_loc(loc[:-1], loc[-1]), msg))
            continue
        out.append((format_loc(loc), msg))
    return out


def _did_you_mean(loc: list[Any]) -> str:
    """Given the loc of an unknown key, return '; did you mean "x"?' naming the closest key of its model, or ""."""
    close = difflib.get_close_matches(str(loc[-1]), sorted(_keys_at(loc[:-1])), n=1)
    return f'; did you mean "{close[0]}"?' if close else ""


def _keys_at(loc: list[Any]) -> set[str]:
    """Given the loc of a mapping in the file, return the keys its model (or models, in a union) takes."""
    types: list[Any] = [Config]
    for part in loc:
        types = [inner for t in types for inner in _member_types(t, part)]
    return {name for t in types for name in _model_fields(t)}


def _unwrap(annotation: Any) -> list[Any]:
    """Given a type annotation, return its alternatives without Annotated, Optional or union wrappers."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin is typing.Union or origin is UnionType:
        return [inner for arg in typing.get_args(annotation) for inner in _unwrap(arg)]
    return [annotation]


def _member_types(annotation: Any, part: Any) -> list[Any]:
    """Given a type and one loc part (a field name, list index or mapping key), return the types of that member."""
    out: list[Any] = []
    for t in _unwrap(annotation):
        if isinstance(t, type) and issubclass(t, BaseModel) and isinstance(part, str) and part in t.model_fields:
            out.append(t.model_fields[part].annotation)
        elif typing.get_origin(t) is list and isinstance(part, int):
            out.append(typing.get_args(t)[0])
        elif typing.get_origin(t) is dict:
            out.append(typing.get_args(t)[1])
    return out


def _model_fields(annotation: Any) -> list[str]:
    return [name for t in _unwrap(annotation) if isinstance(t, type) and issubclass(t, BaseModel)
            for name in t.model_fields]


# What YAML 1.1 reads an unquoted scalar as, for a value of another type where text is expected.
_YAML_SCALARS: tuple[tuple[type, str], ...] = (
    (bool, "a boolean (YAML reads an unquoted yes, no, on, off, true or false as one)"),
    (datetime.date, "a date (YAML reads an unquoted 2026-12-07 as one)"),
    (int, "a number (YAML reads an unquoted 010 as the octal number 8, and 1_000 as 1000)"),
    (float, "a number (YAML reads an unquoted 1.5 or 1e3 as one)"),
)


def _expected_text(value: Any) -> str | None:
    """Given a value where text was expected, return the message saying what YAML read it as and to quote it,
    or None if it is no scalar YAML reads unquoted. The value itself is not repeated (it may be a secret)."""
    for kind, meaning in _YAML_SCALARS:
        if isinstance(value, kind):
            return f"expected text, got {meaning}; quote it if it is text"
    return None


def _key_loc(parent: list[Any], key: Any) -> str:
    # A key is written .key even when it is a number, as the line index has it (format_loc writes [n]).
    return f"{format_loc(parent)}.{key}" if parent else str(key)


def _not_text_key(key: Any) -> str:
    return f"key: expected text, got the {type(key).__name__} {key!r}; quote it if it is a name"


# The key a discriminated union is chosen by, by pydantic's name of its discriminator.
_DISCRIMINATOR_KEYS = {"'version'": "version", "_snmp_version()": "version", "'kind'": "kind", "_sso_kind()": "kind"}
_REQUIRED_TAGS = {"version": "2c (a community) or 3 (a user)", "kind": "sqlite or elasticsearch"}
_TAG_HINTS = {("version", "2"): " (SNMPv2 with a community is written 2c)",
              ("version", "1"): " (SNMPv1 is not supported)"}


def _union_tag_error(loc: list[Any], err: Any) -> tuple[str, str]:
    """Given the error of a discriminated union (snmp_auth.X.version, security_log.sink.kind, sso[].kind),
    return (path, message) naming the key and the values it takes."""
    ctx = err.get("ctx") or {}
    key = _DISCRIMINATOR_KEYS.get(str(ctx.get("discriminator")), "kind")
    path = format_loc(loc)
    if err["type"] == "union_tag_not_found":
        return path, f"{key} is required: {_REQUIRED_TAGS.get(key, 'it says which kind of entry this is')}"
    expected = " or ".join(t.strip().strip("'") for t in str(ctx.get("expected_tags", "")).split(","))
    tag = str(ctx.get("tag"))
    return f"{path}.{key}", f"expected {expected}, got {tag!r}{_TAG_HINTS.get((key, tag), '')}"


def _mapping(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _entries(value: Any) -> list[tuple[int, dict]]:
    """Given a raw list, return (index, item) for its mapping items; anything else gives none."""
    return [(i, v) for i, v in enumerate(value) if isinstance(v, dict)] if isinstance(value, list) else []


def _names(values: Iterable[Any]) -> str:
    return ", ".join(sorted(str(v) for v in values)) or "none"


def _cross_references(raw: Any, base_dir: Path | None = None) -> list[tuple[str, str]]:
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
    # The SNMP exporter finds a device by its address alone: two polled devices (with an snmp_auth
    # profile) at one agent would label each other's scrapes. Both entries are named, each at its own line.
    import ipaddress

    from citydc.hostport import parse_host_port  # the exporter's parser, default port 161 as there

    def snmp_agent_key(address: str) -> tuple[str, int] | None:
        try:
            host, port = parse_host_port(address, 161)
        except ValueError:
            return None
        try:
            host = str(ipaddress.ip_address(host))  # one spelling per address (IPv6 zeros, case)
        except ValueError:
            host = host.lower().rstrip(".")  # host names are case-insensitive
        return host, port

    agents: dict[tuple[str, int], tuple[int, str]] = {}
    for i, dev in devices:
        if not dev.get("snmp_auth"):
            continue  # not polled (no SNMP profile): a host reached over SSH only may share an address
        address, name = text(dev.get("address")), text(dev.get("name")) or f"devices[{i}]"
        agent = snmp_agent_key(address) if address is not None else None
        if agent is None:
            continue  # a malformed address is reported by the structural pass
        if agent in agents:
            first, first_name = agents[agent]
            where = f"{agent[0]}:{agent[1]}" if ":" not in agent[0] else f"[{agent[0]}]:{agent[1]}"
            errors.append((f"devices[{first}].address", f'SNMP agent {where} is also devices[{i}].address '
                                                        f'("{name}"): one device per agent address and port'))
            errors.append((f"devices[{i}].address", f'SNMP agent {where} is also devices[{first}].address '
                                                    f'("{first_name}"): one device per agent address and port'))
        else:
            agents[agent] = (i, name)
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
    sso = _entries(raw.get("sso"))
    check_unique("sso", sso, "name", "SSO source name")  # audit state and labels are keyed by it
    ldap_names = {name for _, src in _entries(raw.get("ldap")) if (name := text(src.get("name")))}
    for i, src in sso:
        name = text(src.get("ldap_source"))
        if src.get("kind", "log") in ("keycloak", "log") and name is not None and name not in ldap_names:
            errors.append((f"sso[{i}].ldap_source", f'unknown ldap source "{name}" (known: {_names(ldap_names)})'))
    # Two log sources of one file would read, store and detect each event twice (under two source names).
    logs: dict[str, int] = {}
    for i, src in sso:
        if src.get("kind", "log") == "log" and (path := text(src.get("log_path"))) is not None:
            j = logs.setdefault(os.path.normpath(path), i)
            if j != i:
                errors.append((f"sso[{i}].log_path", f"the same file as sso[{j}].log_path: each event would be "
                                                     "stored and counted twice"))
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
        errors.extend(_same_repository(base, job, base_dir))
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


def _same_repository(base: str, job: dict, base_dir: Path | None) -> list[tuple[str, str]]:
    """Given a raw backup job (at ``base``), return an error when its offsite_repo is its local_repo
    written again (the same normalised path or URL): every copy would succeed with nothing leaving the site."""
    local, offsite = (_mapping(job.get(key)).get("url") for key in ("local_repo", "offsite_repo"))
    if not (isinstance(local, str) and isinstance(offsite, str)):
        return []
    if repository_key(local, base_dir) != repository_key(offsite, base_dir):
        return []
    name = job.get("name") if isinstance(job.get("name"), str) else "?"
    # The URL is not repeated: a REST URL may hold a password in its userinfo, and the error names both fields.
    return [(f"{base}.offsite_repo.url", f'job "{name}": the same repository as local_repo.url; expected '
                                         "a repository on the other site")]


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
              lines: dict[str, int] | None = None, errors: Sequence[ConfigError] = ()) -> Config:
    """Given parsed YAML data, return the validated Config with every path absolute.

    Relative paths are taken relative to ``base_dir`` (the config file's directory; the working
    directory when None). With ``check_files``, files that must exist (``ca_file``, ``ssh_config``)
    are checked. Raise ConfigInvalid with every error, each with its path (and line, from ``lines``),
    ``errors`` found while reading the file (duplicate keys) first.
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
        found.extend(_cross_references(raw, context["base_dir"]))
    if errors or found or config is None:
        unique = list(dict.fromkeys(found))
        raise ConfigInvalid(filename, [*errors, *(ConfigError(p, m, _line_for(lines or {}, p)) for p, m in unique)])
    return config


def load_text(text: str, filename: str = "citydc.yaml", *, base_dir: Path | None = None,
              check_files: bool = True) -> Config:
    """Given YAML text, return the validated Config (see load_data). Raise ConfigInvalid with every error."""
    raw, lines, duplicates = read_yaml(text, filename)
    return load_data(raw, filename, base_dir=base_dir, check_files=check_files, lines=lines, errors=duplicates)


# Far above any real citydc.yaml (the sample is about 30 KiB), far below what PyYAML takes seconds and
# gigabytes to compose: a wrong --config (a log file, a dump) is refused before it is read.
MAX_CONFIG_BYTES = 16 * 1024 * 1024


def _read_regular_file(path: Path) -> bytes:
    """Given a path, return the bytes of the regular file there. Raise ConfigInvalid if it cannot be read,
    is no regular file or is larger than MAX_CONFIG_BYTES.

    Opened without blocking, then checked on the open descriptor: a FIFO with no writer would block
    the open (and the command) forever, and a device such as /dev/zero never ends."""
    def refused(message: str) -> ConfigInvalid:
        return ConfigInvalid(str(path), [ConfigError("", message)])

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise refused(f"cannot read: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise refused(f"not a regular file ({_file_kind(info.st_mode)}); expected a YAML file")
        if info.st_size > MAX_CONFIG_BYTES:
            raise refused(f"file too large ({info.st_size / 2**20:.1f} MiB; at most {MAX_CONFIG_BYTES // 2**20} MiB)")
        with os.fdopen(fd, "rb", closefd=False) as stream:
            data = stream.read(MAX_CONFIG_BYTES + 1)  # bounded: the file may have grown since fstat
    except OSError as exc:
        raise refused(f"cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_CONFIG_BYTES:
        raise refused(f"file too large (more than {MAX_CONFIG_BYTES // 2**20} MiB)")
    return data


def _file_kind(mode: int) -> str:
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "not a file")


def _decode(data: bytes, filename: str) -> str:
    """Given the bytes of the config, return its text. Raise ConfigInvalid naming the line and column
    of the first byte that is not UTF-8."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[:exc.start].decode("utf-8")  # valid: the error is at the first bad byte
        mark = _mark_at(before, len(before))
        raise ConfigInvalid(filename, [ConfigError("", f"not UTF-8 text at column {mark.column + 1} ({exc.reason})",
                                                   mark.line + 1)]) from None


def load(path: str | Path, *, check_files: bool = True) -> LoadedConfig:
    """Given a path, return the LoadedConfig, every relative path in it made absolute against the
    file's directory. Raise ConfigInvalid (unreadable file included)."""
    path = Path(path)
    text = _decode(_read_regular_file(path), str(path))
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
