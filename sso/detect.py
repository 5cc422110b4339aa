"""Detections over authentication attempts (directory binds and SSO logins, merged in time order), with
sliding windows that survive between runs.

An attempt names its account either as a DN (an LDAP bind) or as a username (a Keycloak login). Both
are compared by ``account_key``: the value of a leading ``uid=`` RDN, else the normalised DN, else the
lowercase username, so ``uid=sw-alice,ou=people,…`` bound at slapd and ``sw-alice`` logging in through
Keycloak are one account (a uid is unique in the city's directory, checked by the LDAP audit).

- brute force: ``bruteforce_failures`` failed binds of one account within the window;
- password spraying: failed binds of ``spraying_accounts`` distinct accounts from one source
  address within the window;
- success after failures: a successful bind of an account that failed at least
  ``success_after_failures`` times within the window just before;
- off-hours privileged login: a successful bind of a privileged account (a member in the
  baseline of the privileged groups) outside the working hours and days, in the configured zone.

Each detection fires once per burst (a further failure inside the same window does not repeat it).
The state holds only what the window needs and is capped, so memory stays bounded whatever the log.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from citydc.config.models import AuthDetection
from citydc.sso.model import PROBE_RDN
from citydc.sso.rules import norm_dn

__all__ = ["Attempt", "Detection", "Detector", "account_key"]

MAX_KEYS = 100_000
# Over MAX_KEYS, the tables are cut to this many: one prune per 10,000 new keys, not one per attempt (each
# prune walks the three tables).
KEEP_KEYS = MAX_KEYS * 9 // 10
_PROBE = PROBE_RDN.lower() + ","
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class Detection:
    action: str  # auth-bruteforce | auth-spraying | auth-success-after-failures | auth-offhours-privileged
    severity: str
    when: datetime
    users: tuple[str, ...]
    source_ip: str | None
    message: str
    id_key: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"action": self.action, "severity": self.severity, "when": self.when.isoformat(),
                "users": list(self.users), "source_ip": self.source_ip, "message": self.message,
                "details": self.details}


class Attempt(NamedTuple):
    """One authentication attempt as the detector sees it (a bind, a Keycloak login). A named tuple: one is made
    per Keycloak login, and a frozen dataclass costs several times more to make."""

    when: datetime
    user: str  # DN or username, as the source shows it
    source_ip: str | None
    success: bool
    origin: str = "ldap"  # ldap | keycloak: which kind of source saw it


def account_key(user: str) -> str:
    """Given a DN or a username, return the key one account has in every source."""
    if "=" not in user:
        return user.strip().lower()
    if "\\" in user:
        return _escaped_key(user)
    dn = norm_dn(user)
    first = dn.split(",", 1)[0]
    attr, _, value = first.partition("=")
    return value if attr == "uid" and value else dn


def _escaped_key(user: str) -> str:
    """``account_key`` of a DN with escapes. slapd logs the bind DN in its own spelling (``uid=lin\\2Cmei,…`` for
    the entry ``uid=lin\\,mei,…``), the baseline names it as written, Keycloak by the bare uid ``lin,mei``:
    escapes are decoded (``files.dn_key``) and the uid's escaped commas taken as commas. Split at every comma,
    an escaped one cut the uid short: ``uid=lin\\,mei`` was the account ``lin\\``."""
    from citydc.sso.files import dn_key  # only for the rare DN with an escape: files imports pydantic

    key = dn_key(user)
    first, i = [], 0
    while i < len(key) and key[i] != ",":  # dn_key leaves ``\\,`` and ``\\\\`` escaped in values
        if key[i] == "\\" and i + 1 < len(key):
            i += 1
        first.append(key[i])
        i += 1
    attr, _, value = "".join(first).partition("=")
    return value if attr == "uid" and value else key


class _SourceWindow:
    """One source address's failed attempts within the window, oldest first, and how many of them each account
    has: the number of distinct accounts is known at once, however many failures the window holds (a spray
    of thousands from one address stays linear, where a set of the window's accounts per failure did not)."""

    __slots__ = ("counts", "failures")

    def __init__(self) -> None:
        self.failures: deque[tuple[float, str, str]] = deque()  # (time, account, origin)
        self.counts: dict[str, int] = {}

    def add(self, t: float, account: str, origin: str) -> None:
        self.failures.append((t, account, origin))
        self.counts[account] = self.counts.get(account, 0) + 1

    def expire(self, horizon: float) -> None:
        failures, counts = self.failures, self.counts
        while failures and failures[0][0] < horizon:
            account = failures.popleft()[1]
            left = counts[account] - 1
            if left:
                counts[account] = left
            else:
                del counts[account]

    def last(self) -> float | None:
        return self.failures[-1][0] if self.failures else None


def _hours(spec: str) -> tuple[time, time]:
    a, b = spec.split("-")
    return time.fromisoformat(a), time.fromisoformat(b)


class Detector:
    """Given the thresholds and the privileged DNs, turns binds into detections (``feed``)."""

    def __init__(self, settings: AuthDetection, privileged: Iterable[str] = ()) -> None:
        self.s = settings
        self.privileged = {account_key(d) for d in privileged}
        self.zone = ZoneInfo(settings.timezone)
        self.start, self.end = _hours(settings.working_hours)
        # OrderedDicts: beyond MAX_KEYS the oldest keys go first, in O(1) each
        self.fail_user: OrderedDict[str, deque[float]] = OrderedDict()
        self.fail_src: OrderedDict[str, _SourceWindow] = OrderedDict()  # ip -> its failures in the window
        self.alerted: OrderedDict[str, float] = OrderedDict()  # "kind:key" -> time of the alert (no repeat within)

    # -- state ---------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {"fail_user": {k: list(v) for k, v in self.fail_user.items()},
                "fail_src": {k: [list(x) for x in v.failures] for k, v in self.fail_src.items()},
                "alerted": self.alerted}

    def load(self, data: dict[str, Any]) -> None:
        self.fail_user = OrderedDict((k, deque(float(t) for t in v)) for k, v in (data.get("fail_user") or {}).items())
        self.fail_src = OrderedDict()
        for k, v in (data.get("fail_src") or {}).items():
            window = self.fail_src[k] = _SourceWindow()
            for x in v:
                window.add(float(x[0]), str(x[1]), str(x[2]) if len(x) > 2 else "ldap")
        self.alerted = OrderedDict((k, float(v)) for k, v in (data.get("alerted") or {}).items())

    def _prune(self, now: float) -> None:
        horizon = now - self.s.window_seconds
        for k in [k for k, q in self.fail_user.items() if not q or q[-1] < horizon]:
            del self.fail_user[k]
        for k in [k for k, w in self.fail_src.items() if (last := w.last()) is None or last < horizon]:
            del self.fail_src[k]
        for k in [k for k, t in self.alerted.items() if t < horizon]:
            del self.alerted[k]
        for table in (self.fail_user, self.fail_src, self.alerted):
            if len(table) > MAX_KEYS:  # a flood of distinct names: keep the newest
                while len(table) > KEEP_KEYS:
                    table.popitem(last=False)

    # -- detections ----------------------------------------------------------------------------

    def offhours(self, when: datetime) -> bool:
        local = when.astimezone(self.zone)
        if _DAYS[local.weekday()] not in self.s.working_days:
            return True
        t = local.time()
        return not (self.start <= t < self.end)

    def _once(self, key: str, t: float) -> bool:
        last = self.alerted.get(key)
        if last is not None and t - last <= self.s.window_seconds:
            return False
        self.alerted[key] = t
        return True

    def feed(self, b: Attempt) -> list[Detection]:
        """Given the next attempt (time order), return the detections it completes."""
        t = b.when.timestamp()
        horizon = t - self.s.window_seconds
        name = b.user
        user = (name.strip().lower() if "=" not in name else account_key(name)) if name else ""
        out: list[Detection] = []
        fail_user = self.fail_user
        if len(fail_user) > MAX_KEYS or len(self.fail_src) > MAX_KEYS:
            self._prune(t)
        q = fail_user.get(user)
        while q and q[0] < horizon:
            q.popleft()
        if not b.success:
            if not user or user.startswith(_PROBE):
                # The LDAP audit's plain-bind probe fails by design, once per run: five runs within the window
                # (a retry loop, several sources on one server) read as a brute force of the probe DN (seen in
                # the audit's own runs on slapd 2.5). Its bind is still recorded as an event; a success is not
                # skipped (the probe DN then exists, which it never should).
                return out
            if q is None:
                q = fail_user[user] = deque()
            q.append(t)
            if len(q) >= self.s.bruteforce_failures and self._once(f"bf:{user}", t):
                out.append(Detection(
                    "auth-bruteforce", "high", b.when, (b.user,), b.source_ip,
                    f"brute force: {len(q)} failed logins of {b.user} within {self.s.window_seconds} s",
                    f"bf:{user}:{q[0]}", {"failures": len(q), "window_seconds": self.s.window_seconds,
                                          "origin": b.origin}))
            if b.source_ip:
                window = self.fail_src.get(b.source_ip)
                if window is None:
                    window = self.fail_src[b.source_ip] = _SourceWindow()
                window.add(t, user, b.origin)
                window.expire(horizon)
                accounts = window.counts
                if len(accounts) >= self.s.spraying_accounts and self._once(f"spray:{b.source_ip}", t):
                    out.append(Detection(
                        "auth-spraying", "high", b.when, tuple(sorted(accounts)), b.source_ip,
                        f"password spraying: {len(accounts)} accounts failed from {b.source_ip} "
                        f"within {self.s.window_seconds} s", f"spray:{b.source_ip}:{window.failures[0][0]}",
                        {"accounts": len(accounts), "window_seconds": self.s.window_seconds,
                         "accounts_by_origin": _by_origin(window.failures)}))
            return out
        if q and len(q) >= self.s.success_after_failures:
            out.append(Detection(
                "auth-success-after-failures", "high", b.when, (b.user,), b.source_ip,
                f"{b.user} logged in after {len(q)} failures within {self.s.window_seconds} s",
                f"saf:{user}:{t}", {"failures": len(q), "origin": b.origin}))
        self.fail_user.pop(user, None)
        if user and user in self.privileged and self.offhours(b.when):
            local = b.when.astimezone(self.zone)
            out.append(Detection(
                "auth-offhours-privileged", "medium", b.when, (b.user,), b.source_ip,
                f"privileged account {b.user} logged in at {local:%a %H:%M} {self.s.timezone} "
                f"(working hours {self.s.working_hours} {','.join(self.s.working_days)})",
                f"offhours:{user}:{t}", {"local_time": local.isoformat(), "origin": b.origin}))
        return out

    def finish(self, now: datetime | None = None) -> None:
        """Drop what has left the window (call before saving the state)."""
        self._prune((now or datetime.now(UTC)).timestamp())


def _by_origin(window: Iterable[tuple[float, str, str]]) -> dict[str, int]:
    """Distinct failing accounts per kind of source (a spray split over LDAP and Keycloak shows both)."""
    seen: dict[str, set[str]] = {}
    for _, user, origin in window:
        seen.setdefault(origin, set()).add(user)
    return {k: len(v) for k, v in sorted(seen.items())}
