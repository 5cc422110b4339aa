# -*- coding: utf-8 -*-
# Apache-2.0 (see the citydc repository)
"""Alertmanager API v2 silences: the pure logic (matchers, bodies, finding ours) and bounded HTTP calls.

A silence is identified by its matchers (exact label equality only) and its creator: ``present`` reuses an
active or pending silence with the same matchers and ``createdBy``, ``absent`` expires every such silence.
"""

from __future__ import annotations

import base64
import datetime
import json
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request

LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
LIVE_STATES = ("active", "pending")


class AlertmanagerError(Exception):
    """The Alertmanager API refused a request or could not be reached."""


def matchers_from(labels):
    """Given {label: value}, return the API's matcher list (exact equality), sorted by label name.

    Raise ValueError for an empty dict, a bad label name or an empty value (a matcher on "" would match
    every alert without that label, which is not "exactly this server").
    """
    if not labels:
        raise ValueError("matchers: at least one label is needed")
    out = []
    for name in sorted(labels):
        value = labels[name]
        if not LABEL_NAME.match(str(name)):
            raise ValueError("matchers: %r is not a label name" % (name,))
        if value is None or str(value) == "":
            raise ValueError("matchers: label %s has an empty value" % name)
        out.append({"name": str(name), "value": str(value), "isRegex": False, "isEqual": True})
    return out


def _key(matchers):
    return sorted((m["name"], m["value"], bool(m.get("isRegex", False)), bool(m.get("isEqual", True)))
                  for m in matchers)


def same_matchers(silence, matchers):
    """Given a silence from the API and a matcher list, return whether they match exactly the same alerts."""
    return _key(silence.get("matchers", [])) == _key(matchers)


def find_live(silences, matchers, created_by):
    """Given the API's silence list, the matchers and the creator, return the active or pending silences
    with exactly those matchers made by that creator (ids sorted)."""
    found = [s for s in silences
             if s.get("status", {}).get("state") in LIVE_STATES and s.get("createdBy") == created_by
             and same_matchers(s, matchers)]
    return sorted(found, key=lambda s: s["id"])


def rfc3339(when):
    """Given an aware datetime, return it as the API's RFC 3339 UTC text."""
    return when.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def silence_body(matchers, now, duration_seconds, created_by, comment):
    """Given matchers, the start time (aware datetime), a duration, the creator and a comment, return
    the body of POST /api/v2/silences. Raise ValueError for a duration outside 1 s .. 7 days."""
    if not 1 <= duration_seconds <= 7 * 86400:
        raise ValueError("duration: expected 1 s to 7 days, got %s s" % duration_seconds)
    return {"matchers": matchers, "startsAt": rfc3339(now),
            "endsAt": rfc3339(now + datetime.timedelta(seconds=duration_seconds)),
            "createdBy": created_by, "comment": comment}


def filter_query(matchers):
    """Given matchers, return the query string of GET /api/v2/silences that narrows the list to them."""
    return urllib.parse.urlencode([("filter", '%s="%s"' % (m["name"], m["value"].replace('"', '\\"')))
                                   for m in matchers])


class Access(object):
    """How to reach an Alertmanager that runs with a web config: an SSL context (its CA, a client certificate) and
    the basic auth header. ``Access()`` is a plain one (the default verification, no login)."""

    def __init__(self, context=None, headers=None):
        self.context = context
        self.headers = dict(headers or {})

    def __repr__(self):  # never the header: it holds the password
        return "Access(tls=%s, basic_auth=%s)" % (self.context is not None, "Authorization" in self.headers)


def access(ca_path=None, client_cert=None, client_key=None, username=None, password=None):
    """Given the module's TLS and basic auth options, return the Access. Raise AlertmanagerError naming the option
    when they do not go together or a file does not load (never quoting the password)."""
    if (client_cert is None) != (client_key is None):
        raise AlertmanagerError("client_cert and client_key go together")
    if (username is None) != (password is None):
        raise AlertmanagerError("url_username and url_password go together")
    context = None
    if ca_path or client_cert:
        try:
            context = ssl.create_default_context(cafile=ca_path or None)
        except (ssl.SSLError, OSError) as exc:
            raise AlertmanagerError("ca_path: not a CA bundle that loads (%s)" % (getattr(exc, "strerror", None) or exc))
        if client_cert:
            try:
                context.load_cert_chain(client_cert, client_key, password=_no_passphrase)
            except (ssl.SSLError, OSError, TypeError) as exc:
                raise AlertmanagerError("client_cert/client_key: they do not load together (%s; the key must be PEM "
                                        "without a passphrase)" % (getattr(exc, "strerror", None) or exc))
    headers = {}
    if username is not None:
        if ":" in username:
            raise AlertmanagerError("url_username: basic auth allows no ':' in the user name")
        token = base64.b64encode(("%s:%s" % (username, password)).encode("utf-8")).decode("ascii")
        headers["Authorization"] = "Basic " + token
    return Access(context, headers)


def _no_passphrase():
    raise TypeError("the key is encrypted")


def api(base_url, method, path, body=None, timeout=10.0, how=None):
    """Given Alertmanager's base URL, a method, an API path, a JSON body and how to reach it (an Access), return
    the decoded answer.

    Raise AlertmanagerError on any HTTP error status, a refused connection, a TLS failure or a timeout.
    """
    how = how or Access()
    url = base_url.rstrip("/") + path
    data = None if body is None else json.dumps(body).encode("utf-8")
    headers = dict(how.headers)
    if data is not None:
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        # the configured Alertmanager
        with urllib.request.urlopen(req, timeout=timeout, context=how.context) as resp:  # noqa: S310
            text = resp.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace").strip()[:300]
        raise AlertmanagerError("%s %s: HTTP %d %s" % (method, url, exc.code, detail))
    except (urllib.error.URLError, OSError) as exc:
        raise AlertmanagerError("%s %s: %s" % (method, url, getattr(exc, "reason", exc)))
    return json.loads(text) if text.strip() else None


def live_silences(base_url, matchers, created_by, timeout=10.0, how=None):
    """Return our active or pending silences with exactly these matchers (see find_live)."""
    listed = api(base_url, "GET", "/api/v2/silences?" + filter_query(matchers), timeout=timeout, how=how) or []
    return find_live(listed, matchers, created_by)
