# -*- coding: utf-8 -*-
# Apache-2.0 (see the citydc repository)
"""The comparable settings of an HAProxy: its configuration file flattened to ``{section.directive: value}``.

Pure (no Ansible import), so the citydc unit tests read it too. Keys are ``<section>.<directive>``, the
section as written (``global``, ``defaults``, ``frontend fe_app``, ``backend be_app``), the directive its
first word, or its first two for ``option``/``timeout``/``stats``/``http-check``/``tcp-check`` (three for
``no option X``). Per site by nature, and so left out: socket and state-file paths, ``bind`` addresses,
log targets, and each server's name and address; the servers of a backend are compared by their count and
their options (``check inter 1s ...``), which differ between sites only when drifted.
"""

from __future__ import annotations

TWO_WORD = ("option", "timeout", "stats", "http-check", "tcp-check", "http-request", "http-response")
SECTIONS = ("global", "defaults", "frontend", "backend", "listen", "peers", "resolvers", "userlist",
            "mailers", "program", "cache", "ring", "http-errors")
# Directives whose values are per site (paths, addresses): never compared.
SITE_LOCAL = ("stats socket", "server-state-file", "bind", "log", "pidfile", "chroot", "stats bind-process")
INFO_KEYS = ("Version", "Nbthread", "Maxconn", "Hard_maxconn", "Maxsock", "Ulimit-n")


def directive_key(words):
    """Given the words of one config line, return (directive, rest of the words)."""
    if words[0] == "no" and len(words) > 2:
        return " ".join(words[:3]), words[3:]
    if words[0] in TWO_WORD and len(words) > 1:
        return " ".join(words[:2]), words[2:]
    return words[0], words[1:]


# Words after which a directive holds a password: userlist "user NAME password HASH" / "insecure-password PASS".
PASSWORD_WORDS = ("password", "insecure-password")
SECRET = "(set)"  # what a password is compared as: the drift output, its event and the run's artifacts show it


def redact(directive, rest):
    """Given a directive and its words, return the words with each password replaced by ``SECRET``: ``stats auth
    USER:PASS`` (the user is kept) and a userlist's ``user NAME password|insecure-password PASS``. The settings are
    printed by ``citydc play drift``, recorded in its event and kept in the run's artifacts: a password (or its
    crypt hash, open to an offline guess) must not be. As keepalived's VRRP password, one is compared only as set,
    so a password changed on one site alone is not drift."""
    words = list(rest)
    if directive == "stats auth" and words:
        user, sep, _ = words[0].partition(":")
        words[0] = user + sep + SECRET if sep else SECRET
    elif directive == "user":
        for i, word in enumerate(words[:-1]):
            if word in PASSWORD_WORDS:
                words[i + 1] = SECRET
    return words


def parse_config(text, ignore=SITE_LOCAL):
    """Given haproxy.cfg text, return {``section.directive``: value} of its comparable settings."""
    values = {}
    servers = {}
    section = None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not line:
            continue
        words = line.split()
        if words[0] in SECTIONS and not raw[:1].isspace():
            section = " ".join(words[:2])
            continue
        if section is None:
            continue
        directive, rest = directive_key(words)
        if directive in ignore:
            continue
        if directive == "server":
            servers.setdefault(section, []).append(" ".join(rest[2:]))  # name and address are per site
            continue
        values.setdefault("%s.%s" % (section, directive), []).append(" ".join(redact(directive, rest)))
    out = {key: "; ".join(vals) for key, vals in values.items()}
    for section, opts in servers.items():
        out["%s.servers" % section] = str(len(opts))
        out["%s.server options" % section] = " | ".join(sorted(set(opts)))
    return out


def parse_info(text, keys=INFO_KEYS):
    """Given the answer of ``show info``, return {``runtime.Key``: value} for the chosen keys."""
    out = {}
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip() in keys:
            out["runtime.%s" % name.strip()] = value.strip()
    return out


def backends(settings):
    """Given parsed settings, return the backend names (sections ``backend X``/``listen X``)."""
    names = set()
    for key in settings:
        section = key.split(".", 1)[0]
        kind, _, name = section.partition(" ")
        if kind in ("backend", "listen") and name:
            names.add(name)
    return sorted(names)


# srv_admin_state bits (HAProxy 2.6 include/haproxy/server-t.h), as in haproxy_runtime (which imports socket).
ADMIN_MAINT = 0x01 | 0x02 | 0x04 | 0x20 | 0x40
ADMIN_DRAIN = 0x08 | 0x10


def runtime_pool_settings(backend, state, site="", server_sites=None):
    """Given a backend's ``show servers state`` ({server: {weight, admin_state}}), this load balancer's site
    and {server: site}, return its comparable runtime settings: the runtime weights as a sorted multiset
    (``0 0 100 100``: a set would hide a pool half failed over), per kind of server when the sites are known
    (``weights own site``: this site's servers, ``weights other site``: the others'), and the number of
    servers in maintenance and in drain."""
    server_sites = server_sites or {}
    kinds = {}
    for name, s in state.items():
        if site and server_sites:
            owner = server_sites.get(name)
            kind = "weights own site" if owner == site else "weights other site" if owner else "weights unknown site"
        else:
            kind = "weights"
        kinds.setdefault(kind, []).append(s["weight"])
    out = {"runtime.backend %s.%s" % (backend, kind): " ".join(str(w) for w in sorted(ws))
           for kind, ws in kinds.items()}
    out["runtime.backend %s.servers in maint" % backend] = str(
        sum(1 for s in state.values() if s["admin_state"] & ADMIN_MAINT))
    out["runtime.backend %s.servers in drain" % backend] = str(
        sum(1 for s in state.values() if s["admin_state"] & ADMIN_DRAIN and not s["admin_state"] & ADMIN_MAINT))
    return out
