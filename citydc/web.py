"""TLS and basic auth for every HTTP endpoint of citydc, configured by the web config file of
Prometheus' exporters (exporter-toolkit, ``--web.config.file``), so an operator reuses the file
node_exporter already has:

```yaml
tls_server_config:
  cert_file: server.crt            # relative paths are relative to this file
  key_file: server.key
  client_auth_type: RequireAndVerifyClientCert   # or NoClientCert (default), VerifyClientCertIfGiven
  client_ca_file: clients-ca.crt
  min_version: TLS12               # TLS10 TLS11 TLS12 (default) TLS13
basic_auth_users:
  prometheus: $2b$12$...           # bcrypt hash (htpasswd -nBC 12 "" | tr -d ':\\n')
```

The endpoint's own code does not change: ``secure(server, web)`` takes a ``socketserver``-based
server (``http.server.ThreadingHTTPServer``, or wsgiref's) before or after it starts, wraps each
accepted connection in TLS inside the connection's own thread (a client that never finishes the
handshake holds one thread for at most ``HANDSHAKE_SECONDS``, never the accept loop), and wraps
its request handler class so every request, whatever its method (GET for scrapes, POST for the
Alertmanager webhook), must carry a valid ``Authorization: Basic`` header before the handler runs.
A refused request gets 401 and is passed to ``on_denied`` (to be counted or recorded as a
security event) with the peer address and the reason, never the password.

The file is read again when it or a file it names changes (checked at each connection), as the
exporter toolkit does, so certificates rotate without a restart; a changed file that does not
load is logged and the previous configuration stays in force.

Not supported (a clear error names the field): inline ``cert``/``key``/``client_ca``,
``cipher_suites`` and ``curve_preferences`` (Go names; Python's ssl uses OpenSSL's defaults),
``RequestClientCert``/``RequireAnyClientCert`` (Python's ssl verifies every client certificate
it asks for) and ``rate_limit``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import logging
import os
import re
import socket
import socketserver
import ssl
import threading
import types
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

import bcrypt
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from citydc.hostport import is_loopback

__all__ = ["BAD_LENGTH", "HANDSHAKE_SECONDS", "LENGTH_REQUIRED", "PEER_GONE", "READ_TIMEOUT_SECONDS", "TOO_LARGE",
           "Web", "WebConfig", "WebConfigError", "content_length", "load", "metrics_server", "printable", "read_body",
           "secure", "serve_in_thread"]

log = logging.getLogger(__name__)

HANDSHAKE_SECONDS = 10.0
# Each read or write of a connection waits at most this long: a client that stalls (sends half a
# request and nothing more) is dropped instead of holding its thread forever.
READ_TIMEOUT_SECONDS = 30.0
_DRAIN_LIMIT = 64 * 1024
# What a peer can do to a connection that is no error of ours: leave (reset, broken pipe, TLS EOF) or stall.
PEER_GONE = (ConnectionError, TimeoutError, ssl.SSLError)
# Denied: a callback given the peer address and the reason ("no_credentials", "bad_credentials",
# "tls_handshake", "client_san").
OnDenied = Callable[[str, str], None]

_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1, "TLS12": ssl.TLSVersion.TLSv1_2,
             "TLS13": ssl.TLSVersion.TLSv1_3}
_BCRYPT = re.compile(r"^\$2[abxy]\$\d\d\$[./A-Za-z0-9]{53}$")
# Headers the exporter toolkit lets an operator set (http_server_config.headers).
_HEADERS = ("Strict-Transport-Security", "X-Frame-Options", "X-Content-Type-Options", "X-XSS-Protection",
            "Content-Security-Policy")
_UNSUPPORTED = {
    "cert": "inline certificates are not supported by citydc: use cert_file",
    "key": "inline keys are not supported by citydc: use key_file",
    "client_ca": "inline CAs are not supported by citydc: use client_ca_file",
    "cipher_suites": "not supported by citydc (Go cipher names; Python's ssl uses OpenSSL's secure defaults): "
                     "remove it",
    "curve_preferences": "not supported by citydc (Python's ssl uses OpenSSL's defaults): remove it",
}


class WebConfigError(ValueError):
    """The web config file is unreadable or wrong; the message names the file and the field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TLSServerConfig(_Model):
    cert_file: str | None = None
    key_file: str | None = None
    client_auth_type: Literal["NoClientCert", "VerifyClientCertIfGiven", "RequireAndVerifyClientCert",
                              "RequestClientCert", "RequireAnyClientCert", "RequireClientCert"] = "NoClientCert"
    client_ca_file: str | None = None
    min_version: Literal["TLS10", "TLS11", "TLS12", "TLS13"] = "TLS12"
    max_version: Literal["TLS10", "TLS11", "TLS12", "TLS13"] = "TLS13"
    prefer_server_cipher_suites: bool = True
    client_allowed_sans: list[str] | None = None
    # Known to the exporter toolkit, refused here with a reason (see _UNSUPPORTED).
    cert: Any = None
    key: Any = None
    client_ca: Any = None
    cipher_suites: Any = None
    curve_preferences: Any = None

    @property
    def enabled(self) -> bool:
        return bool(self.cert_file or self.key_file or self.client_ca_file or self.client_auth_type != "NoClientCert")


class HTTPServerConfig(_Model):
    http2: bool = True  # citydc serves HTTP/1.1 only; accepted so node_exporter's file loads
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("headers")
    @classmethod
    def known_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if name not in _HEADERS:
                raise ValueError(f"header {name!r} cannot be set (allowed: {', '.join(_HEADERS)})")
        return value


class WebConfig(_Model):
    tls_server_config: TLSServerConfig = Field(default_factory=TLSServerConfig)
    http_server_config: HTTPServerConfig = Field(default_factory=HTTPServerConfig)
    basic_auth_users: dict[str, str] = Field(default_factory=dict)
    rate_limit: Any = None

    @field_validator("basic_auth_users")
    @classmethod
    def bcrypt_hashes(cls, value: dict[str, str]) -> dict[str, str]:
        for user, hashed in value.items():
            if not isinstance(user, str) or not user or ":" in user:
                raise ValueError(f"user name {user!r}: expected a non-empty name without ':'")
            if not isinstance(hashed, str) or not _BCRYPT.match(hashed):
                # The hash is not printed: a pasted plain password would land in the log.
                raise ValueError(f"user {user!r}: expected a bcrypt hash ($2y$/$2b$..., 60 characters), "
                                 "e.g. from htpasswd -nBC 12 \"\" | tr -d ':\\n'")
        return value


def _format(path: Path, exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "(top level)"
        if error["type"] == "extra_forbidden":
            text = "unknown field (not part of the web config format; check its spelling)"
        elif error["type"] == "literal_error":
            text = f"expected one of {error['ctx']['expected']}, got {error['input']!r}"
        else:
            text = error["msg"].removeprefix("Value error, ")
        lines.append(f"{path}: {where}: {text}")
    return "\n".join(lines)


def _check(path: Path, cfg: WebConfig) -> None:
    tls = cfg.tls_server_config
    for name, why in _UNSUPPORTED.items():
        if getattr(tls, name) is not None:
            raise WebConfigError(f"{path}: tls_server_config.{name}: {why}")
    if cfg.rate_limit is not None:
        raise WebConfigError(f"{path}: rate_limit: not supported by citydc: remove it")
    if not tls.enabled:
        return
    if not tls.cert_file:
        raise WebConfigError(f"{path}: tls_server_config.cert_file: missing (TLS needs cert_file and key_file)")
    if not tls.key_file:
        raise WebConfigError(f"{path}: tls_server_config.key_file: missing (TLS needs cert_file and key_file)")
    auth = tls.client_auth_type
    if auth in ("RequestClientCert", "RequireAnyClientCert", "RequireClientCert"):
        raise WebConfigError(f"{path}: tls_server_config.client_auth_type: {auth} is not supported by citydc "
                             "(Python's ssl verifies every client certificate it asks for): use "
                             "VerifyClientCertIfGiven or RequireAndVerifyClientCert with client_ca_file")
    if auth == "NoClientCert" and tls.client_ca_file:
        raise WebConfigError(f"{path}: tls_server_config.client_ca_file: set without a client_auth_type that "
                             "asks for certificates (RequireAndVerifyClientCert)")
    if auth != "NoClientCert" and not tls.client_ca_file:
        raise WebConfigError(f"{path}: tls_server_config.client_ca_file: missing; {auth} needs the CA that signs "
                             "the clients' certificates")
    if tls.client_allowed_sans is not None and auth != "RequireAndVerifyClientCert":
        raise WebConfigError(f"{path}: tls_server_config.client_allowed_sans: needs client_auth_type "
                             "RequireAndVerifyClientCert")
    if _VERSIONS[tls.min_version] > _VERSIONS[tls.max_version]:
        raise WebConfigError(f"{path}: tls_server_config.min_version: {tls.min_version} is above max_version "
                             f"{tls.max_version}")


def load(path: Path) -> WebConfig:
    """Given the path of a web config file, return it validated, with relative file names
    resolved against the file's directory. An empty file is a valid config (no TLS, no auth).

    Raise WebConfigError, naming the file and the field, if it cannot be read or is wrong.
    """
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise WebConfigError(f"{path}: cannot read the web config file: {getattr(exc, 'strerror', None) or exc}"
                             ) from None
    from citydc.config.loader import ConfigInvalid, read_yaml  # bounded, and never echoes the file's text

    try:
        raw, _, duplicates = read_yaml(text, str(path))
    except ConfigInvalid as exc:
        raise WebConfigError("\n".join(f"{path}: line {e.line}: {e.message}" if e.line else f"{path}: {e.message}"
                                        for e in exc.errors)) from None
    if duplicates:
        raise WebConfigError("\n".join(f"{path}: line {e.line}: {e.path}: {e.message}" for e in duplicates))
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise WebConfigError(f"{path}: (top level): expected a mapping of tls_server_config, http_server_config, "
                             f"basic_auth_users; got {type(raw).__name__}")
    for key in ("tls_server_config", "http_server_config", "basic_auth_users"):
        if key in raw and raw[key] is None:
            raw[key] = {}  # `basic_auth_users:` with nothing under it, as YAML writes an empty section
    try:
        cfg = WebConfig.model_validate(raw)
    except ValidationError as exc:
        raise WebConfigError(_format(path, exc)) from None
    _check(path, cfg)
    base = path.parent
    tls = cfg.tls_server_config
    resolved = {name: str(base / value) for name in ("cert_file", "key_file", "client_ca_file")
                if (value := getattr(tls, name))}
    return cfg.model_copy(update={"tls_server_config": tls.model_copy(update=resolved)})


def tls_context(path: Path, tls: TLSServerConfig) -> ssl.SSLContext:
    """Given a checked tls_server_config (and its file for messages), return the server SSLContext.

    Raise WebConfigError naming the field whose file cannot be loaded."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.minimum_version = _VERSIONS[tls.min_version]
        ctx.maximum_version = _VERSIONS[tls.max_version]
    except ValueError as exc:
        raise WebConfigError(f"{path}: tls_server_config.min_version: {exc}") from None
    if tls.prefer_server_cipher_suites:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE

    def no_passphrase() -> bytes:
        # An encrypted key would otherwise make OpenSSL prompt on the terminal.
        raise WebConfigError(f"{path}: tls_server_config.key_file: the key is encrypted; give an unencrypted key "
                             "readable only by citydc")

    for name in ("cert_file", "key_file"):
        try:
            readable = os.access(getattr(tls, name), os.R_OK)
        except ValueError:  # a NUL byte in the path
            readable = False
        if not readable:
            raise WebConfigError(f"{path}: tls_server_config.{name}: cannot read {getattr(tls, name)}")
    try:
        ctx.load_cert_chain(tls.cert_file, tls.key_file, password=no_passphrase)  # type: ignore[arg-type]
    except (OSError, ValueError, ssl.SSLError) as exc:  # ValueError: a NUL byte in the path
        raise WebConfigError(f"{path}: tls_server_config.cert_file/key_file: cannot load the certificate and key "
                             f"({getattr(exc, 'reason', None) or exc})") from None
    if tls.client_ca_file:
        try:
            ctx.load_verify_locations(cafile=tls.client_ca_file)
        except (OSError, ValueError, ssl.SSLError) as exc:  # ValueError: a NUL byte in the path
            raise WebConfigError(f"{path}: tls_server_config.client_ca_file: cannot load {tls.client_ca_file} "
                                 f"({getattr(exc, 'reason', None) or getattr(exc, 'strerror', None) or exc})"
                                 ) from None
        ctx.verify_mode = ssl.CERT_REQUIRED if tls.client_auth_type == "RequireAndVerifyClientCert" \
            else ssl.CERT_OPTIONAL
    return ctx


# Compared against when the user is unknown, with the cost of a configured hash, so a wrong user
# costs the same time as a wrong password (no user enumeration by timing). One per cost, made once.
_DUMMIES: dict[int, str] = {}


def _dummy(users: dict[str, str]) -> str:
    cost = int(next(iter(users.values()))[4:6])
    if cost not in _DUMMIES:
        _DUMMIES[cost] = bcrypt.hashpw(b"citydc-no-such-user", bcrypt.gensalt(max(4, min(cost, 31)))).decode()
    return _DUMMIES[cost]


@dataclass
class _Loaded:
    config: WebConfig
    context: ssl.SSLContext | None
    stamps: tuple


class Web:
    """Given a web config file (or None: plain HTTP, no auth), admit connections and requests
    (see module doc). ``on_denied`` is called for every refused connection or request."""

    def __init__(self, path: Path | None, on_denied: OnDenied | None = None) -> None:
        self.path = path
        self.on_denied = on_denied
        self.denied: dict[str, int] = {}
        self._lock = threading.Lock()
        self._cache: OrderedDict[bytes, bool] = OrderedDict()
        self._loaded = self._load() if path is not None else _Loaded(WebConfig(), None, ())

    # -- configuration -------------------------------------------------------------------------

    def _stamps(self, cfg: WebConfig | None) -> tuple:
        assert self.path is not None
        files = [self.path]
        if cfg is not None:
            tls = cfg.tls_server_config
            files += [Path(f) for f in (tls.cert_file, tls.key_file, tls.client_ca_file) if f]
        out = []
        for f in files:
            try:
                st = f.stat()
                out.append((str(f), st.st_mtime_ns, st.st_size, st.st_ino))
            except OSError:
                out.append((str(f), None))
        return tuple(out)

    def _load(self) -> _Loaded:
        assert self.path is not None
        cfg = load(self.path)
        tls = cfg.tls_server_config
        ctx = tls_context(self.path, tls) if tls.enabled else None
        return _Loaded(cfg, ctx, self._stamps(cfg))

    @property
    def config(self) -> WebConfig:
        return self._current().config

    @property
    def tls(self) -> bool:
        return self._loaded.context is not None

    def _current(self) -> _Loaded:
        # Re-read the file when it or a file it names changed; a broken change keeps the old config.
        loaded = self._loaded
        if self.path is None or self._stamps(loaded.config) == loaded.stamps:
            return loaded
        with self._lock:
            if self._stamps(self._loaded.config) != self._loaded.stamps:
                try:
                    fresh = self._load()
                except WebConfigError as exc:
                    log.error("web config not reloaded, the previous one stays in force: %s", exc)
                    self._loaded = _Loaded(self._loaded.config, self._loaded.context, self._stamps(self._loaded.config))
                else:
                    if (fresh.context is None) != (self._loaded.context is None):
                        # Turning TLS on or off changes the URL scheme Prometheus uses: only at a restart.
                        log.error("web config not reloaded: turning TLS on or off needs a restart")
                        self._loaded = _Loaded(self._loaded.config, self._loaded.context, fresh.stamps)
                    else:
                        log.info("web config %s reloaded", self.path)
                        self._loaded = fresh
                        self._cache.clear()  # users or hashes may have changed
            return self._loaded

    # -- admission -----------------------------------------------------------------------------

    def deny(self, peer: str, reason: str) -> None:
        """Count a refused connection or request and tell ``on_denied``."""
        self.denied[reason] = self.denied.get(reason, 0) + 1
        if self.on_denied is not None:
            try:
                self.on_denied(peer, reason)
            except Exception:  # a failing hook must not turn a refusal into a crash
                log.exception("on_denied hook failed")

    def authorized(self, header: str | None) -> tuple[bool, str]:
        """Given an Authorization header value (or None), return (admitted, reason when not)."""
        users = self._current().config.basic_auth_users
        if not users:
            return True, ""
        if not header or header[:6].lower() != "basic ":
            return False, "no_credentials"
        try:
            user, sep, password = base64.b64decode(header[6:].strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return False, "bad_credentials"
        if not sep:
            return False, "bad_credentials"
        hashed = users.get(user) or _dummy(users)
        # bcrypt is slow on purpose (~0.1-0.3 s): remember outcomes by a digest of what was checked,
        # as the exporter toolkit does, so a scrape every few seconds does not cost a core.
        key = hashlib.sha256(b"\0".join((user.encode(), password.encode(), hashed.encode()))).digest()
        with self._lock:
            ok = self._cache.get(key)
        if ok is None:
            ok = bcrypt.checkpw(password.encode(), hashed.encode()) and user in users
            with self._lock:
                self._cache[key] = ok
                if len(self._cache) > 256:  # bounded: guessed passwords must not grow memory
                    self._cache.popitem(last=False)
        return (True, "") if ok else (False, "bad_credentials")

    def wrap(self, sock: socket.socket, peer: str) -> ssl.SSLSocket | None:
        """Given an accepted connection, return it wrapped in TLS after the handshake (and the
        client SAN check), or None if it failed (counted as denied; the socket is closed)."""
        loaded = self._current()
        assert loaded.context is not None
        sock.settimeout(HANDSHAKE_SECONDS)
        try:
            tls = loaded.context.wrap_socket(sock, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            log.info("TLS handshake with %s failed: %s", peer, getattr(exc, "reason", None) or exc)
            sock.close()
            self.deny(peer, "tls_handshake")
            return None
        allowed = loaded.config.tls_server_config.client_allowed_sans
        if allowed is not None:
            cert = tls.getpeercert() or {}
            sans = {value for _, value in cert.get("subjectAltName", ())}
            if not sans & set(allowed):
                log.info("client certificate of %s has none of the allowed SANs", peer)
                tls.close()
                self.deny(peer, "client_san")
                return None
        tls.settimeout(None)
        return tls


def protect(handler: type[BaseHTTPRequestHandler], web: Web) -> type[BaseHTTPRequestHandler]:
    """Given a request handler class, return a subclass that refuses, with 401, every request
    (any method) without valid basic auth credentials, and adds the configured headers."""

    class Protected(handler):  # type: ignore[valid-type, misc]
        timeout = getattr(handler, "timeout", None) or READ_TIMEOUT_SECONDS

        def handle(self) -> None:
            try:
                super().handle()
            except PEER_GONE as exc:  # the peer left or stalled: no one to answer, and no error of ours to log
                log.debug("connection from %s ended: %s", self.client_address[0], exc.__class__.__name__)
                self.close_connection = True

        def parse_request(self) -> bool:
            if not super().parse_request():
                return False
            ok, reason = web.authorized(self.headers.get("Authorization"))
            if ok:
                return True
            # Read a small unread body first: closing a socket with unread data sends a reset that
            # can destroy the 401 before the client reads it. A large one closes the connection.
            length = content_length(self.headers.get("Content-Length", "0"))
            if length is not None and length <= _DRAIN_LIMIT:
                self.rfile.read(length)
            else:
                self.close_connection = True
            # Recorded before the answer, so whoever sees the 401 finds the refusal already recorded.
            web.deny(str(self.client_address[0]), reason)
            body = b"401 Unauthorized\n"
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="citydc", charset="UTF-8"')
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            return False

        def end_headers(self) -> None:
            for name, value in web.config.http_server_config.headers.items():
                self.send_header(name, value)
            super().end_headers()

    Protected.__name__ = Protected.__qualname__ = f"Protected{handler.__name__}"
    return Protected


def secure(server: socketserver.TCPServer, web: Web) -> None:
    """Given a socketserver-based HTTP server (started or not) and a Web, make every connection
    TLS when configured and every request authenticated when users are configured; warn when the
    server listens on a non-loopback address without TLS."""
    host = str(server.server_address[0])
    cfg = web.config
    if not is_loopback(host):
        if not web.tls:
            log.warning("listening on %s without TLS: scrapes (and any basic auth passwords) cross the network in "
                        "clear; give a web config file with tls_server_config (--web.config.file)", host)
        if not cfg.basic_auth_users and not cfg.tls_server_config.client_auth_type.startswith("RequireAndVerify"):
            log.warning("listening on %s without authentication: anyone who reaches it can read it; set "
                        "basic_auth_users or client certificates in the web config file", host)
    server.RequestHandlerClass = protect(server.RequestHandlerClass, web)  # type: ignore[arg-type]
    if not web.tls:
        return
    plain_finish = server.finish_request

    def finish_request(self: socketserver.TCPServer, request: Any, client_address: Any) -> None:
        # Runs in the connection's own thread (ThreadingMixIn), so a slow handshake blocks nobody.
        tls = web.wrap(request, str(client_address[0]))
        if tls is None:
            return
        try:
            plain_finish(tls, client_address)
        finally:
            with contextlib.suppress(OSError):
                tls.close()

    server.finish_request = types.MethodType(finish_request, server)  # type: ignore[method-assign]


def content_length(value: str | None) -> int | None:
    """Given a Content-Length header, return it as a number, or None when missing or not a plain
    decimal number (``str.isdigit`` alone takes "²", which ``int`` refuses)."""
    if value is None:
        return None
    value = value.strip()
    return int(value) if value.isascii() and value.isdigit() else None


# Why read_body refused a body (the reason given to its on_refused callback).
LENGTH_REQUIRED, BAD_LENGTH, TOO_LARGE = "length_required", "bad_length", "too_large"


def read_body(handler: BaseHTTPRequestHandler, limit: int = 1 << 20,
              on_refused: Callable[[str, str], None] | None = None) -> bytes | None:
    """Given a handler of an (authenticated) POST, return its body, or None after answering in plain
    text 411 (no Content-Length), 400 (a Content-Length that is not a number) or 413 (over ``limit``
    bytes), and calling ``on_refused(reason, detail)`` (reason LENGTH_REQUIRED, BAD_LENGTH or
    TOO_LARGE) so the caller counts and logs it. For receivers such as the Alertmanager webhook."""
    raw = handler.headers.get("Content-Length")
    length = content_length(raw)
    if length is None:
        reason, status = (LENGTH_REQUIRED, 411) if raw is None else (BAD_LENGTH, 400)
        detail = "no Content-Length" if raw is None else f"Content-Length {printable(raw, 40)} is not a number"
        return _refuse(handler, status, reason, detail, on_refused)
    if length > limit:
        if length <= max(limit, _DRAIN_LIMIT):
            handler.rfile.read(length)  # unread data would reset the connection before the 413 is read
        return _refuse(handler, 413, TOO_LARGE, f"body of {length} bytes over the limit of {limit}", on_refused)
    return handler.rfile.read(length)


def _refuse(handler: BaseHTTPRequestHandler, status: int, reason: str, detail: str,
            on_refused: Callable[[str, str], None] | None) -> None:
    if on_refused is not None:
        on_refused(reason, detail)  # counted and logged before the answer, which the peer may not wait for
    body = f"{detail}\n".encode()
    handler.close_connection = True
    handler.send_response(status)
    handler.send_header("Content-Type", "text/plain; charset=utf-8")
    handler.send_header("Content-Length", str(len(body)))
    handler.send_header("Connection", "close")
    handler.end_headers()
    handler.wfile.write(body)
    return None


def printable(text: str, limit: int = 200) -> str:
    """Given text from a peer, return it safe for a log line or an answer: control and other
    unprintable characters escaped (no forged log lines, no terminal escapes), at most ``limit``
    characters (then "…")."""
    out = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[:limit + 1])
    return out[:limit] + "…" if len(out) > limit else out


class _MetricsHandler(BaseHTTPRequestHandler):
    registry: CollectorRegistry
    title = "citydc"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            body = encoder(self.registry)
            status = 200
        elif path == "/":
            body, content_type, status = f"{self.title}: /metrics\n".encode(), "text/plain; charset=utf-8", 200
        else:
            body, content_type, status = b"not found: use /metrics\n", "text/plain; charset=utf-8", 404
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per scrape would flood the journal


def metrics_server(registry: CollectorRegistry, host: str, port: int, title: str = "citydc") -> ThreadingHTTPServer:
    """Given a registry and an address, return a bound (not yet serving) HTTP server for
    ``/metrics``, to pass to secure() and serve_in_thread(). Raise OSError if the bind fails."""
    handler = type("MetricsHandler", (_MetricsHandler,), {"registry": registry, "title": title})
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    server_class = type("MetricsServer", (ThreadingHTTPServer,), {"address_family": family,
                                                                 "daemon_threads": True})
    return server_class((host, port), handler)


def serve_in_thread(server: socketserver.BaseServer) -> threading.Thread:
    """Given a server, run serve_forever on a daemon thread and return the thread."""
    thread = threading.Thread(target=server.serve_forever, name="citydc-http", daemon=True)
    thread.start()
    return thread


@dataclass
class Endpoint:
    """What a CLI prints about where it serves."""

    scheme: str
    auth: list[str] = field(default_factory=list)


def describe(web: Web) -> Endpoint:
    """Given a Web, return the scheme and the protections in force, for the start-up line."""
    cfg = web.config
    auth = []
    if cfg.basic_auth_users:
        auth.append("basic auth")
    if cfg.tls_server_config.client_auth_type != "NoClientCert":
        auth.append("client certificates")
    return Endpoint("https" if web.tls else "http", auth)
