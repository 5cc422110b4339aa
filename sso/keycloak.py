"""Keycloak's admin REST API, as the SSO audit reads it (httpx, a service-account token).

The audit's client is a confidential client with a service account (``client_credentials``) in
``auth_realm``; its token is refreshed when it expires or is refused once. Every answer is checked
for the shape the audit relies on: a field of the wrong type is an ``ApiShapeError`` naming the
field and the request (a changed or broken server must not end in a traceback, and must not be
read as "no problem").

The least roles (docs/sso-audit.md): ``view-realm``, ``view-users``, ``view-clients`` and
``view-events`` of the audited realm's ``realm-management`` client (or, for a client in ``master``,
of the ``<realm>-realm`` client).
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, quote_plus

import orjson

if TYPE_CHECKING:  # imported when a client is made: `citydc audit ldap` loads this module (rule ids) without it
    import httpx

__all__ = ["MAX_ANSWER_BYTES", "ApiShapeError", "Keycloak", "KeycloakError", "field", "need_list", "need_map"]

# An answer is read up to this size (decoded), like the Prometheus client's: a page of 1,000 users or events is
# well under 1 MB, and a broken proxy or an endless chunked body must not fill the memory.
MAX_ANSWER_BYTES = 64 * 1024 * 1024


class KeycloakError(RuntimeError):
    """Keycloak could not be reached, verified, authenticated against or read. Never holds the secret."""


class ApiShapeError(KeycloakError):
    """An answer of the admin API does not have the shape the audit reads (names the field)."""


_MISSING = object()


def need_map(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ApiShapeError(f"{where}: expected a JSON object, got {type(value).__name__}")
    return value


def need_list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise ApiShapeError(f"{where}: expected a JSON array, got {type(value).__name__}")
    return value


def field(obj: Mapping[str, Any], name: str, kind: type | tuple[type, ...], where: str, default: Any = _MISSING) -> Any:
    """Given an object of an answer, return ``obj[name]`` checked against ``kind``.

    A missing field returns ``default`` (or is an error when there is none); a value of another type
    is always an ApiShapeError naming ``where.name``. ``bool`` is not accepted for ``int``.
    """
    value = obj.get(name, _MISSING)
    if value is _MISSING or value is None:
        if default is _MISSING:
            raise ApiShapeError(f"{where}.{name}: missing")
        return default
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise ApiShapeError(f"{where}.{name}: expected {'/'.join(k.__name__ for k in kinds)}, got bool")
    if not isinstance(value, kinds):
        raise ApiShapeError(f"{where}.{name}: expected {'/'.join(k.__name__ for k in kinds)}, "
                            f"got {type(value).__name__}")
    return value


class Keycloak:
    """A client of one Keycloak's admin API. Use as a context manager."""

    def __init__(self, base_url: str, client_id: str, client_secret: str, *, auth_realm: str = "master",
                 ca_file: Path | None = None, timeout: float = 30.0, transport: httpx.BaseTransport | None = None
                 ) -> None:
        self.base_url = base_url.rstrip("/")
        self.client_id, self._secret, self.auth_realm = client_id, client_secret, auth_realm
        verify: ssl.SSLContext | bool = True
        if ca_file is not None:
            verify = ssl.create_default_context(cafile=str(ca_file))
        from citydc import httpx_lean

        httpx = httpx_lean.load()
        self._httpx = httpx
        self.timeout = timeout
        self.http = httpx.Client(base_url=self.base_url, verify=verify, timeout=timeout, transport=transport,
                                 headers={"Accept": "application/json"})
        self._token: str | None = None
        self._expires = 0.0

    def __enter__(self) -> Keycloak:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    # -- token ---------------------------------------------------------------------------------

    def token(self) -> str:
        """Return a valid access token of the service account (client_credentials)."""
        if self._token is not None and time.monotonic() < self._expires:
            return self._token
        url = f"/realms/{quote(self.auth_realm, safe='')}/protocol/openid-connect/token"
        try:
            resp = self._send("POST", url, data={"grant_type": "client_credentials", "client_id": self.client_id,
                                                 "client_secret": self._secret})
        except self._httpx.HTTPError as exc:
            raise KeycloakError(f"{self.base_url}: cannot get a token: {_why(exc)}") from None
        if resp.status_code != 200:
            raise KeycloakError(f"{self.base_url}: token request of client {self.client_id} in realm "
                                f"{self.auth_realm} refused (HTTP {resp.status_code}: {_error_of(resp, self._hide)})")
        body = need_map(_json(resp, "token"), "token")
        self._token = field(body, "access_token", str, "token")
        lifetime = field(body, "expires_in", int, "token", 60)
        self._expires = time.monotonic() + max(5, lifetime - 10)
        return self._token

    def _hide(self, text: str) -> str:
        """Given an error text of the server, return it without the client secret or the access token: a proxy or
        a wrong base_url can answer with an error page that echoes the request (the form holds the secret)."""
        for credential in {self._secret, quote_plus(self._secret), quote(self._secret, safe=""), self._token or ""}:
            if len(credential) >= 4:
                text = text.replace(credential, "***")
        return text

    def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send a request and return its answer, read whole but at most MAX_ANSWER_BYTES (decoded), within
        ``timeout`` seconds from the request's start.

        httpx's timeout bounds each wait only: a server trickling its body (a byte every 0.2 s) resets it at
        every byte and held a request, and so the audit, for hours. The deadline is checked at each chunk of
        the body, so such an answer ends after about ``timeout`` (a last wait of at most ``timeout`` more).
        Not a signal (sso/deadline.py): the events of ``audit auth`` are read in a background thread.

        Raise KeycloakError naming the method and path (never the query or the form: they may hold a secret)
        when the answer is larger or late."""
        deadline = time.monotonic() + self.timeout
        with self.http.stream(method, url, **kwargs) as resp:
            length = resp.headers.get("content-length", "")
            chunks, size = [], int(length) if length.isdigit() and not resp.headers.get("content-encoding") else 0
            if size <= MAX_ANSWER_BYTES:
                size = 0
                for chunk in resp.iter_bytes():
                    size += len(chunk)
                    if size > MAX_ANSWER_BYTES:
                        break
                    chunks.append(chunk)
                    if time.monotonic() > deadline:
                        raise KeycloakError(f"{self.base_url}: {method} {url}: no complete answer within "
                                            f"{self.timeout:g} s (timeout_seconds, for the whole answer)")
            if size > MAX_ANSWER_BYTES:
                raise KeycloakError(f"{self.base_url}: {method} {url}: answer larger than {MAX_ANSWER_BYTES} bytes")
        # The body is decoded already: the new answer must not be decoded (or its length checked) again.
        headers = [(k, v) for k, v in resp.headers.multi_items()
                   if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")]
        return self._httpx.Response(resp.status_code, headers=headers, content=b"".join(chunks),
                                    request=resp.request)

    # -- reads ---------------------------------------------------------------------------------

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """Given an admin API path (after /admin/realms/) and query parameters, return the JSON answer."""
        url = f"/admin/realms/{path}"
        for attempt in (0, 1):
            try:
                resp = self._send("GET", url, params=params, headers={"Authorization": f"Bearer {self.token()}"})
            except self._httpx.HTTPError as exc:
                raise KeycloakError(f"{self.base_url}: GET {url}: {_why(exc)}") from None
            if resp.status_code == 401 and attempt == 0:
                self._token = None  # expired early or revoked: one new token
                continue
            if resp.status_code == 403:
                raise KeycloakError(f"GET {url}: forbidden: the audit client lacks a role (needs view-realm, "
                                    "view-users, view-clients, view-events)")
            if resp.status_code != 200:
                raise KeycloakError(f"GET {url}: HTTP {resp.status_code}: {_error_of(resp, self._hide)}")
            return _json(resp, f"GET {url}")
        raise KeycloakError(f"GET {url}: token refused twice")  # pragma: no cover - loop returns or raises

    def realm(self, realm: str) -> Mapping[str, Any]:
        return need_map(self.get(quote(realm, safe="")), f"realm {realm}")

    def clients(self, realm: str) -> list[Mapping[str, Any]]:
        where = f"realm {realm} clients"
        return [need_map(c, f"{where}[{i}]") for i, c in enumerate(need_list(
            self.get(f"{quote(realm, safe='')}/clients"), where))]

    def components(self, realm: str, kind: str) -> list[Mapping[str, Any]]:
        where = f"realm {realm} components"
        return [need_map(c, f"{where}[{i}]") for i, c in enumerate(need_list(
            self.get(f"{quote(realm, safe='')}/components", {"type": kind}), where))]

    def paged(self, path: str, params: Mapping[str, Any], page: int, where: str) -> Iterator[Mapping[str, Any]]:
        """Given a list resource, yield its objects, ``page`` per request (first/max)."""
        first = 0
        while True:
            items = need_list(self.get(path, {**params, "first": first, "max": page}), where)
            for i, item in enumerate(items):
                yield need_map(item, f"{where}[{first + i}]")
            if len(items) < page:
                return
            first += page

    def users(self, realm: str, page: int = 500) -> Iterator[Mapping[str, Any]]:
        return self.paged(f"{quote(realm, safe='')}/users", {"briefRepresentation": "false"}, page,
                          f"realm {realm} users")

    def role_users(self, realm: str, role: str, client_uuid: str | None = None,
                   page: int = 500) -> Iterator[Mapping[str, Any]]:
        """Yield the users holding a realm role, or a client role when ``client_uuid`` is given (directly)."""
        r = quote(realm, safe="")
        path = (f"{r}/clients/{client_uuid}/roles/{quote(role, safe='')}/users" if client_uuid
                else f"{r}/roles/{quote(role, safe='')}/users")
        return self.paged(path, {}, page, f"realm {realm} role {role} users")

    def user_realm_roles(self, realm: str, user_id: str) -> list[str]:
        """Return the names of the realm roles a user holds (composite: through groups and composites too)."""
        where = f"realm {realm} user {user_id} roles"
        roles = need_list(self.get(f"{quote(realm, safe='')}/users/{quote(user_id, safe='')}/role-mappings/realm/"
                                   "composite"), where)
        return [field(need_map(r, where), "name", str, where) for r in roles]

    def events(self, realm: str, params: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        where = f"realm {realm} events"
        return [need_map(e, f"{where}[{i}]") for i, e in enumerate(need_list(
            self.get(f"{quote(realm, safe='')}/events", params), where))]

    def admin_events(self, realm: str, params: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        where = f"realm {realm} admin-events"
        return [need_map(e, f"{where}[{i}]") for i, e in enumerate(need_list(
            self.get(f"{quote(realm, safe='')}/admin-events", params), where))]


# Digits to "9", anything else to a space: a run of 19 digits is then a plain substring search (a regular
# expression took longer over a 400 kB page than json.loads itself).
_DIGITS = bytes(0x39 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_LONG_DIGITS = b"9" * 19


def loads(content: bytes) -> Any:
    """Given an answer's body, return ``json.loads(content)`` (what ``httpx.Response.json`` gives).

    orjson decodes it when it gives the very same values, at about half the time (a page of 1,000 events
    is 400 kB): not when a run of 19 digits or more could be an integer beyond 64 bits (orjson makes it a
    float), and not for what orjson refuses (NaN, a lone surrogate, another encoding than UTF-8...), which
    json decodes, or refuses, as before. A unit test compares both on many answers and numbers."""
    if _LONG_DIGITS not in content.translate(_DIGITS):
        try:
            return orjson.loads(content)
        except orjson.JSONDecodeError:
            pass
    return json.loads(content)


def _json(resp: httpx.Response, what: str) -> Any:
    try:
        return loads(resp.content)
    except ValueError:
        raise ApiShapeError(f"{what}: the answer is not JSON ({resp.headers.get('content-type', '?')})") from None


def _error_of(resp: httpx.Response, hide: Callable[[str], str]) -> str:
    """Given an error answer and what hides the credentials in a text, return its first 200 characters of
    explanation (hidden before they are cut: a cut must not leave half a secret)."""
    try:
        body = resp.json()
    except ValueError:
        return hide(resp.text)[:200].strip() or resp.reason_phrase
    if isinstance(body, Mapping):
        return hide(str(body.get("error_description") or body.get("error") or body.get("errorMessage") or ""))[:200]
    return hide(str(body))[:200]


def _why(exc: httpx.HTTPError) -> str:
    text = str(exc) or type(exc).__name__
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return f"TLS certificate not verified ({text}); set ca_file"
    return text
