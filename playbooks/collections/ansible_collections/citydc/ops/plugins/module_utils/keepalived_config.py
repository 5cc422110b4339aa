# -*- coding: utf-8 -*-
# Apache-2.0 (see the citydc repository)
"""The comparable settings of a keepalived: its configuration file flattened to ``{keepalived.block.keyword: value}``.

Pure (no Ansible import), so the citydc unit tests read it too. keepalived.conf is line-oriented: ``keyword
args`` lines, a line ending in ``{`` opens a block (``global_defs``, ``vrrp_instance NAME``, ``authentication``,
``unicast_peer``, ``virtual_ipaddress``, ...), ``}`` closes it; ``#`` and ``!`` start a comment outside double
quotes. Keys are ``keepalived.`` and the blocks' names joined by dots, then the keyword; a keyword without
arguments (``nopreempt``) is ``yes``; a keyword given several times joins its values with ``; ``.

Per node or per site by nature, and so left out or reduced: ``router_id``, ``virtual_router_id``, ``priority``,
``unicast_src_ip``/``mcast_src_ip`` (left out); a ``vrrp_instance``'s name with the site id in it (``lb_siwei``
is compared as ``lb_<site>``); ``unicast_peer`` (how many peers); ``virtual_ipaddress`` (each address's prefix
length and options, not the address); ``virtual_routes`` (how many). The VRRP password (``auth_pass``) is a secret: only whether it is set,
never its value nor anything derived from it (8 bytes would be guessed from a hash).
"""

from __future__ import annotations

import re

LEFT_OUT = ("router_id", "virtual_router_id", "priority", "unicast_src_ip", "mcast_src_ip")
SECRET = ("auth_pass",)
_ADDRESS = re.compile(r"^[0-9A-Fa-f:.]+(/\d+)?$")


def _words(line):
    """Given one line, return its words: double-quoted strings kept whole (without the quotes), a comment cut."""
    words, word, quoted, started = [], [], False, False
    for ch in line:
        if quoted:
            if ch == '"':
                quoted = False
            else:
                word.append(ch)
            continue
        if ch == '"':
            quoted, started = True, True
        elif ch in "#!":
            break
        elif ch.isspace():
            if started:
                words.append("".join(word))
                word, started = [], False
        else:
            word.append(ch)
            started = True
    if started:
        words.append("".join(word))
    return words


def _block_name(words, site):
    name = " ".join(words)
    return name.replace(site, "<site>") if site else name


def _vip(words):
    """Given a virtual_ipaddress line, return it without the address (its prefix length and options kept)."""
    if words and _ADDRESS.match(words[0]):
        prefix = words[0].partition("/")[2]
        return " ".join((["/" + prefix] if prefix else ["/32"]) + words[1:])
    return " ".join(words)


def parse_keepalived(text, site=""):
    """Given keepalived.conf text and this node's site id, return {``keepalived.block.keyword``: value} of its
    comparable settings."""
    values = {}
    stack = []  # the open blocks' names
    lists = {}  # list blocks (unicast_peer, virtual_ipaddress, ...): their lines
    for raw in text.splitlines():
        words = _words(raw)
        if not words:
            continue
        closes = 0
        while words and words[-1] == "}":
            words.pop()
            closes += 1
        if words and words[0] == "}":  # "} else {" does not occur in keepalived.conf; a lone "}" closes
            closes += words.count("}")
            words = [w for w in words if w != "}"]
        if words and words[-1].endswith("{"):
            head = words[:-1] if words[-1] == "{" else words[:-1] + [words[-1][:-1]]
            if head:
                stack.append(_block_name(head, site))
                lists.setdefault(".".join(stack), [])
        elif words and stack:
            key = ".".join(stack)
            if stack[-1] in ("unicast_peer", "virtual_ipaddress", "virtual_ipaddress_excluded", "virtual_routes",
                             "track_interface", "track_script"):
                lists[key].append(words)
            elif words[0] not in LEFT_OUT:
                value = "set" if words[0] in SECRET else (" ".join(words[1:]) or "yes")
                values.setdefault("%s.%s" % (key, words[0]), []).append(value)
        for _ in range(closes):
            if stack:
                stack.pop()
    out = {"keepalived.%s" % key: "; ".join(vals) for key, vals in values.items()}
    for key, rows in lists.items():
        last = key.rsplit(".", 1)[-1]
        if last == "unicast_peer":
            out["keepalived.%s" % key] = "%d peer(s)" % len(rows)
        elif last.startswith("virtual_ipaddress"):
            out["keepalived.%s" % key] = "; ".join(sorted(_vip(r) for r in rows))
        elif last == "virtual_routes":
            out["keepalived.%s" % key] = "%d route(s)" % len(rows)  # addresses: per site
        elif last in ("track_interface", "track_script"):
            out["keepalived.%s" % key] = "; ".join(sorted(" ".join(r) for r in rows))
    return out
