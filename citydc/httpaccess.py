"""What citydc's own HTTP clients of Prometheus and Alertmanager need from their ``*_http`` settings
(``HttpClientSettings`` in the config): an SSL context (the CA, a client certificate) and the basic auth header.

The password is read from its reference here, when a command is about to use it, and lives only in the
header; errors name the setting and say what is wrong with it, never the password or the header.
"""

from __future__ import annotations

import base64
import ssl
import urllib.request
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from citydc.secrets import SecretUnavailable

if TYPE_CHECKING:
    from citydc.config.models import HttpClientSettings

__all__ = ["HttpAccess", "HttpAccessError", "NoRedirect", "explain", "http_access", "open_without_redirects"]


class HttpAccessError(ValueError):
    """A ``*_http`` setting cannot be used: a CA or certificate file that does not load, a password that cannot
    be read. The message names the setting."""


@dataclass(frozen=True)
class HttpAccess:
    """The SSL context (None: the default verification) and headers of one server's requests."""

    context: ssl.SSLContext | None = None
    headers: dict[str, str] = field(default_factory=dict, repr=False)


def http_access(settings: HttpClientSettings, where: str, url: str) -> HttpAccess:
    """Given the settings, their place in the config (``alerting.prometheus_http``) and the URL they are used
    with (the config's, or one given on the command line), return the access.

    Raise HttpAccessError naming the setting when they do not fit the URL, a file does not load or the password
    cannot be read."""
    try:
        settings.check_url(url)
    except ValueError as exc:
        raise HttpAccessError(f"{where}: {exc}") from None
    context = None
    if settings.ca_file is not None or settings.cert_file is not None:
        try:
            context = ssl.create_default_context(cafile=None if settings.ca_file is None else str(settings.ca_file))
        except (ssl.SSLError, OSError) as exc:
            raise HttpAccessError(f"{where}.ca_file: not a CA bundle that loads ({_reason(exc)})") from None
        if settings.cert_file is not None:
            try:
                context.load_cert_chain(str(settings.cert_file), str(settings.key_file), password=_no_passphrase)
            except (ssl.SSLError, OSError, TypeError) as exc:
                raise HttpAccessError(f"{where}.cert_file/key_file: the client certificate and key do not load "
                                      f"together ({_reason(exc)}; the key must be PEM without a passphrase)") from None
    headers = {}
    if settings.username is not None and settings.password is not None:
        try:
            password = settings.password.reveal()
        except SecretUnavailable as exc:
            raise HttpAccessError(f"{where}.password: {exc}") from None
        token = base64.b64encode(f"{settings.username}:{password}".encode()).decode("ascii")
        headers["Authorization"] = f"Basic {token}"
    return HttpAccess(context, headers)


def _no_passphrase() -> bytes:
    # An encrypted key would make OpenSSL ask on the terminal; refuse it instead (TypeError above).
    raise TypeError("the key is encrypted")


def _reason(exc: BaseException) -> str:
    return getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def explain(reason: object) -> str:
    """Given why a request got no answer (a URLError's reason), return it as text with what it usually means for
    a server behind a web config: OpenSSL's own words say neither."""
    text = str(reason)
    if isinstance(reason, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in text:
        return f"{text}; set ca_file to the CA that signs the server's certificate"
    # A server that requires a client certificate ends the handshake without one: with an alert the client reads
    # (certificate required, bad certificate: TLS 1.3 and 1.2 differ) or, when the alert is lost to the close, EOF.
    if isinstance(reason, ssl.SSLEOFError) or "EOF occurred in violation of protocol" in text \
            or any(alert in text.upper() for alert in _CLIENT_CERT_ALERTS):
        return (f"{text}; the server ended the TLS handshake: it may require a client certificate (cert_file, "
                "key_file), or not accept the one given")
    return text


_CLIENT_CERT_ALERTS = ("CERTIFICATE_REQUIRED", "ALERT_BAD_CERTIFICATE", "ALERT_CERTIFICATE_UNKNOWN",
                       "ALERT_UNKNOWN_CA", "ALERT_HANDSHAKE_FAILURE")


class NoRedirect(urllib.request.HTTPRedirectHandler):
    """Never follow a redirect: urllib would send the Authorization header (the *_http settings' basic auth) on
    to whatever host and scheme the answer names, and read that host's answer as Prometheus' or Alertmanager's.
    Their APIs never redirect; a 3xx is a proxy or login page in the way (urllib then raises HTTPError)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # urllib's signature
        return None


def open_without_redirects(request: urllib.request.Request, timeout: float, context: ssl.SSLContext | None = None):
    """Given a request, its timeout and SSL context, open it as urllib.request.urlopen does, never following a
    redirect (NoRedirect)."""
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), NoRedirect)
    return opener.open(request, timeout=timeout)
