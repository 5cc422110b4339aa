"""Talking to the directory: the audit's connection (ldap3), the posture probes and the bulk read.

ldap3 opens the connection (StartTLS or LDAPS, certificate verified), binds as the audit account
and does the small reads (policies, privileged groups, a few member look-ups) and the probes.
The bulk read of every account goes through ``bulk_reader``: OpenLDAP's ``ldapsearch`` with
paging, streamed as LDIF into ``ldif.parse`` (default; about 10x faster than ldap3's pure-Python
BER decoding on 100k accounts, measured in bench/ldap_audit.py), or ldap3's paged search.

A simple bind is sent only over TLS, unless the source sets ``allow_plain_bind`` (lab only).
The password never reaches argv, logs, exceptions or a file: ldapsearch reads it from a pipe (``-y /dev/fd/N``).
"""

from __future__ import annotations

import contextlib
import os
import re
import ssl
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import ldap3
from ldap3.core.exceptions import LDAPException

from citydc import execute
from citydc.config.models import LdapSource
from citydc.sso import ldif
from citydc.sso.bulk_search import (
    NO_SUCH_OBJECT,
    SIZE_LIMIT_EXCEEDED,
    SIZE_LIMIT_HINT,
    BulkSearch,
    DirectoryError,
    ldapsearch_argv,
    ldapsearch_failure,
    no_such_object,
    partition,
    password_pipe,
)
from citydc.sso.model import ACCOUNT_ATTRIBUTES, PROBE_RDN, Account
from citydc.sso.rules import ServerPosture

__all__ = ["PROBE_RDN", "BulkSearch", "Directory", "DirectoryError", "ldapsearch_argv", "partition"]

REFERRAL = 10  # LDAP result code: the entry is held by another server


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    ldaps: bool

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        parts = urlsplit(url)
        ldaps = parts.scheme == "ldaps"
        try:
            port = parts.port or (636 if ldaps else 389)
        except ValueError:
            raise DirectoryError(f"{url}: invalid port") from None
        if not parts.hostname:
            raise DirectoryError(f"{url}: no host")
        return cls(parts.hostname, port, ldaps)


class Directory:
    """An open, bound connection to one LDAP source. Use as a context manager."""

    def __init__(self, src: LdapSource, password: str, *, ca_file: Path | None = None,
                 ldapsearch: str = "ldapsearch") -> None:
        self.src = src
        self._password = password
        self.ca_file = ca_file if ca_file is not None else src.ca_file
        self.endpoint = Endpoint.parse(src.url)
        self.ldapsearch = ldapsearch
        self.conn: ldap3.Connection | None = None
        self.cert: dict | None = None
        # Referrals met and not followed, in order: (search base, the URLs). The entries they name are on
        # another server, not read by this audit (the run's notes say so).
        self.referrals: list[tuple[str, list[str]]] = []

    # -- connection ------------------------------------------------------------------------

    def _server(self, tls: bool) -> ldap3.Server:
        tls_conf = ldap3.Tls(validate=ssl.CERT_REQUIRED, version=ssl.PROTOCOL_TLS_CLIENT,
                             ca_certs_file=str(self.ca_file) if self.ca_file else None) if tls else None
        return ldap3.Server(self.endpoint.host, self.endpoint.port, use_ssl=self.endpoint.ldaps and tls,
                            tls=tls_conf, get_info=ldap3.NONE, connect_timeout=self.src.timeout_seconds)

    def _open(self, *, tls: bool, user: str | None = None, password: str | None = None) -> ldap3.Connection:
        """Open a connection (TLS as the source says when ``tls``) and return it, not yet bound."""
        # auto_referrals off: ldap3 follows a referral by binding to the host it names with this connection's DN
        # and password, over plain LDAP when the referral says ldap:// and this connection is LDAPS (seen: the
        # audit's password in clear at a listener named by a referral entry, looking up a privileged member).
        conn = ldap3.Connection(self._server(tls), user=user, password=password, auto_bind=ldap3.AUTO_BIND_NONE,
                                read_only=True, receive_timeout=max(1, int(self.src.timeout_seconds)),
                                raise_exceptions=False, auto_referrals=False,
                                authentication=ldap3.SIMPLE if user else ldap3.ANONYMOUS)
        where = self.src.url
        try:
            conn.open()
            if tls and not self.endpoint.ldaps and self.src.start_tls and not conn.start_tls():
                raise DirectoryError(f"{where}: StartTLS refused: {conn.result.get('description')} "
                                     f"{conn.result.get('message') or ''}".strip())
        except ssl.SSLError as exc:  # ldap3's own exceptions too: it derives them from ssl's (without .reason)
            raise DirectoryError(f"{where}: TLS failed: {tls_problem(exc)}") from None
        except (LDAPException, OSError) as exc:
            raise DirectoryError(f"{where}: {type(exc).__name__}: {_safe(exc)}"
                                 + (" (check ca_file)" if "certificate" in str(exc).lower() else "")) from None
        return conn

    def __enter__(self) -> Directory:
        tls = self.endpoint.ldaps or self.src.start_tls
        if not tls and not self.src.allow_plain_bind:
            raise DirectoryError(f"{self.src.url}: refusing a simple bind without TLS (set start_tls, use ldaps://, "
                                 "or allow_plain_bind for a lab)")
        conn = self._open(tls=tls, user=self.src.bind_dn, password=self._password)
        if tls:
            with contextlib.suppress(AttributeError, ValueError):
                self.cert = conn.socket.getpeercert()
        try:
            ok = conn.bind()
        except LDAPException as exc:
            conn.unbind()
            raise DirectoryError(f"{self.src.url}: bind as {self.src.bind_dn} failed: {_safe(exc)}") from None
        if not ok:
            res = conn.result
            conn.unbind()
            raise DirectoryError(f"{self.src.url}: bind as {self.src.bind_dn} refused: {res.get('description')} "
                                 f"({res.get('result')})")
        self.conn = conn
        return self

    def __exit__(self, *exc: object) -> None:
        if self.conn is not None:
            with contextlib.suppress(LDAPException, OSError):
                self.conn.unbind()
            self.conn = None

    # -- probes ----------------------------------------------------------------------------

    def posture(self) -> ServerPosture:
        """Return the server's posture: anonymous bind, plain simple bind, certificate expiry."""
        not_after = subject = None
        if self.cert and self.cert.get("notAfter"):
            not_after = datetime.fromtimestamp(ssl.cert_time_to_seconds(self.cert["notAfter"]), UTC)
            subject = ",".join("=".join(kv) for rdn in self.cert.get("subject", ()) for kv in rdn) or None
        return ServerPosture(self.src.url, self._probe_anonymous(), self._probe_plain_bind(), not_after, subject)

    def _probe_anonymous(self) -> bool | None:
        tls = self.endpoint.ldaps or self.src.start_tls
        try:
            conn = self._open(tls=tls)
        except DirectoryError:
            return None
        try:
            return bool(conn.bind())
        except LDAPException:
            return None
        finally:
            with contextlib.suppress(LDAPException, OSError):
                conn.unbind()

    def _probe_plain_bind(self) -> bool | None:
        """Send a simple bind with a throwaway DN and random password on a connection without TLS.

        invalidCredentials (49) means the server checked credentials sent in clear: allowed;
        confidentialityRequired (13) means it refused them. Only for ldap:// sources.
        """
        if self.endpoint.ldaps:
            return None
        probe_dn = f"{PROBE_RDN},{self.src.base_dn}"
        try:
            conn = self._open(tls=False, user=probe_dn, password=os.urandom(12).hex())
        except DirectoryError:
            return None
        try:
            conn.bind()
            code = conn.result.get("result")
        except LDAPException:
            return None
        finally:
            with contextlib.suppress(LDAPException, OSError):
                conn.unbind()
        return code in (0, 49)

    # -- small reads -----------------------------------------------------------------------

    def search(self, base: str, flt: str, attrs: Sequence[str], scope: str = ldap3.SUBTREE) -> list[tuple[str, dict]]:
        """Return [(dn, {lowercase attribute: [str]})] of a (small) search; noSuchObject gives []."""
        assert self.conn is not None
        try:
            entries = self.conn.extend.standard.paged_search(base, flt, search_scope=scope, attributes=list(attrs),
                                                             paged_size=self.src.page_size, generator=False)
        except LDAPException as exc:
            raise DirectoryError(f"{self.src.url}: search {flt} under {base} failed: {_safe(exc)}") from None
        res = self.conn.result or {}
        if res.get("result") == REFERRAL:  # the base is held by another server: not followed, nothing here
            self.referrals.append((base, list(res.get("referrals") or [])))
            return []
        if res.get("result") not in (0, 32, None):
            hint = f" ({SIZE_LIMIT_HINT})" if res.get("result") == SIZE_LIMIT_EXCEEDED else ""
            raise DirectoryError(f"{self.src.url}: search {flt} under {base}: {res.get('description')}{hint}")
        refs = [u for e in entries or [] if e.get("type") == "searchResRef" for u in e.get("uri") or []]
        if refs:
            self.referrals.append((base, refs))
        return [(e["dn"], _decode(e.get("raw_attributes", {})))
                for e in entries or [] if e.get("type") == "searchResEntry"]

    def entry(self, dn: str, attrs: Sequence[str]) -> dict | None:
        """Return the entry's attributes, or None when the DN does not exist."""
        found = self.search(dn, "(objectClass=*)", attrs, scope=ldap3.BASE)
        return found[0][1] if found else None

    # -- the bulk read ---------------------------------------------------------------------

    def accounts(self) -> Iterator[Account]:
        """Yield every account under base_dn matching account_filter, streamed (bounded memory)."""
        if self.src.bulk_reader == "ldap3":
            yield from self._accounts_ldap3()
        else:
            yield from self._accounts_ldapsearch()

    def _accounts_ldap3(self) -> Iterator[Account]:
        assert self.conn is not None
        gen = self.conn.extend.standard.paged_search(self.src.base_dn, self.src.account_filter,
                                                     attributes=list(ACCOUNT_ATTRIBUTES),
                                                     paged_size=self.src.page_size, generator=True)
        try:
            for e in gen:
                if e.get("type") == "searchResEntry":
                    yield Account.from_attrs(e["dn"], _decode(e["raw_attributes"]))
                elif e.get("type") == "searchResRef":
                    self.referrals.append((self.src.base_dn, list(e.get("uri") or [])))
        except LDAPException as exc:
            raise DirectoryError(f"{self.src.url}: account search failed: {_safe(exc)}") from None
        # raise_exceptions is off: a refused or cut search (no such base, a size limit) ends the generator quietly
        res = self.conn.result or {}
        if res.get("result") == NO_SUCH_OBJECT:
            raise DirectoryError(no_such_object(self.src, self.src.base_dn, res.get("dn") or ""))
        if res.get("result") == REFERRAL:
            self.referrals.append((self.src.base_dn, list(res.get("referrals") or [])))
        elif res.get("result") not in (0, None):
            hint = f" ({SIZE_LIMIT_HINT})" if res.get("result") == SIZE_LIMIT_EXCEEDED else ""
            raise DirectoryError(f"{self.src.url}: account search failed: {res.get('description')} "
                                 f"({res.get('result')}) {_safe(res.get('message') or '')}".strip() + hint)

    def _accounts_ldapsearch(self) -> Iterator[Account]:
        env = {"LDAPTLS_REQCERT": "demand"}
        if self.ca_file:
            env["LDAPTLS_CACERT"] = str(self.ca_file)
        fd, path = password_pipe(self._password)  # never a named file (bulk_search.password_pipe)
        try:
            argv = ldapsearch_argv(self.src, path, self.src.base_dn, self.src.account_filter,
                                   ACCOUNT_ATTRIBUTES, self.ldapsearch)
            done = execute.Streamed()
            try:
                chunks = execute.stream_chunks("ldapsearch", argv, done, env=env, secrets=[self._password],
                                               pass_fds=(fd,))
                for dn, attrs in ldif.parse_chunks(chunks):
                    yield Account.from_attrs(dn, attrs)
            except execute.ToolFailed as exc:
                raise DirectoryError(str(exc)) from None
            except ldif.LdifError as exc:
                raise DirectoryError(f"ldapsearch output: {exc}") from None
            if done.rc != 0:
                raise DirectoryError(ldapsearch_failure(self.src, self.src.base_dn, done))
        finally:
            os.close(fd)


def tls_problem(exc: BaseException) -> str:
    """Given the exception of a failed TLS handshake (ssl's, or ldap3's: a class deriving from both its own
    exception and ssl's, with neither ``reason`` nor ``verify_message`` set), return what failed and what to
    check, on one line: ``certificate verify failed: certificate has expired (renew the server certificate, …)``."""
    what = None
    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in seen and len(seen) < 8:  # the handshake's own error, when chained
        seen.append(cur)
        if isinstance(cur, ssl.SSLCertVerificationError) and getattr(cur, "verify_message", None):
            what = f"certificate verify failed: {cur.verify_message}"
            break
        cur = cur.__cause__ or cur.__context__
    if what is None:  # ldap3 keeps only the text: "wrap socket error: [SSL: CODE] what failed (_ssl.c:1006)"
        found = re.search(r"\[SSL(?:: [A-Z0-9_]+)?\] ?(.*?)\s*(?:\(_ssl\.c:\d+\)|$)", " ".join(str(exc).split()))
        what = (found.group(1).rstrip("'\",)") if found else "") or _safe(exc)
    what = _safe(what)
    low = what.lower()
    if "expired" in low or "not yet valid" in low:
        hint = "renew the server certificate, or check this host's clock"
    elif "hostname" in low or "ip address mismatch" in low:
        hint = "the server certificate does not name the host of the url"
    else:
        hint = "check ca_file: it must hold the CA that signed the server certificate"
    return f"{what} ({hint})"


def _decode(raw: Mapping[str, Sequence[bytes]]) -> dict[str, list[str]]:
    return {k.lower(): [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in vals]
            for k, vals in raw.items()}


def _safe(exc: BaseException) -> str:
    # ldap3 messages never carry the password, but keep them short and on one line.
    return " ".join(str(exc).split())[:300]
