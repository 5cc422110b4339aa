"""The SSO (Keycloak) audit's rules: stable ids, severities, descriptions and remediations.

Like the directory's rules (rules.py), each rule is a small function registered with
``@sso_rule(...)``; it looks at one realm's snapshot (``RealmData``: the realm's settings, its
clients, its LDAP federations, its administrators, the joiner/leaver comparison with the directory)
and returns findings. Ids never change meaning once published: accepted risks and the security log
refer to them. The snapshot is parsed from the admin API's answers by ``RealmData.from_api``; a
field of the wrong type is an ApiShapeError naming it.

Subjects: ``<realm>`` (realm settings), ``<realm>/client:<clientId>``, ``<realm>/user:<username>``,
``<realm>/ldap:<federation name>``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from citydc.config.models import SsoRuleSettings
from citydc.sso.keycloak import ApiShapeError
from citydc.sso.keycloak import field as get
from citydc.sso.model import Finding, RuleInfo

__all__ = ["SSO_RULES", "AdminUser", "Client", "JmlCase", "LdapFederation", "RealmData", "RealmSettings",
           "check_realm", "password_min_length", "wildcard_redirect"]


@dataclass(frozen=True)
class RealmSettings:
    name: str
    brute_force: bool
    password_policy: str
    events_enabled: bool
    events_expiration: int | None  # seconds; None or 0: kept until deleted
    admin_events: bool
    admin_events_details: bool
    access_token_lifespan: int
    sso_idle: int
    sso_max: int
    # The event types saved when events are on; empty: Keycloak's default set (logins included).
    enabled_event_types: tuple[str, ...] = ()
    # "Remember me" sessions: when on, their own idle / max (0: the SSO session's) apply to them.
    remember_me: bool = False
    remember_idle: int = 0
    remember_max: int = 0
    # Brute-force detection's lockout (None: not in the answer, not judged; Keycloak 26.5 always sends them).
    failure_factor: int | None = None
    permanent_lockout: bool = False
    wait_increment: int | None = None
    max_failure_wait: int | None = None

    @classmethod
    def from_api(cls, rep: Mapping[str, Any]) -> RealmSettings:
        w = "realm"
        name = get(rep, "realm", str, w)
        w = f"realm {name}"
        return cls(name, get(rep, "bruteForceProtected", bool, w, False), get(rep, "passwordPolicy", str, w, ""),
                   get(rep, "eventsEnabled", bool, w, False), get(rep, "eventsExpiration", int, w, None),
                   get(rep, "adminEventsEnabled", bool, w, False),
                   get(rep, "adminEventsDetailsEnabled", bool, w, False),
                   get(rep, "accessTokenLifespan", int, w, 300), get(rep, "ssoSessionIdleTimeout", int, w, 1800),
                   get(rep, "ssoSessionMaxLifespan", int, w, 36000), _strings(rep, "enabledEventTypes", w),
                   get(rep, "rememberMe", bool, w, False), get(rep, "ssoSessionIdleTimeoutRememberMe", int, w, 0),
                   get(rep, "ssoSessionMaxLifespanRememberMe", int, w, 0), get(rep, "failureFactor", int, w, None),
                   get(rep, "permanentLockout", bool, w, False), get(rep, "waitIncrementSeconds", int, w, None),
                   get(rep, "maxFailureWaitSeconds", int, w, None))

    def temporary_lockout_seconds(self) -> int | None:
        """Return how long a temporary lockout lasts at most (None: permanent lockout, or not known)."""
        if self.permanent_lockout or self.wait_increment is None or self.max_failure_wait is None:
            return None
        return min(self.wait_increment, self.max_failure_wait)

    def remembered(self) -> tuple[int, int] | None:
        """Return the (idle, max) of "remember me" sessions, as Keycloak applies them (None when it is off)."""
        if not self.remember_me:
            return None
        return self.remember_idle or self.sso_idle, self.remember_max or self.sso_max


LIFESPAN_ATTRIBUTE = "access.token.lifespan"  # a client's attribute: its own access token lifespan (seconds)


def _lifespan(attributes: Mapping[str, Any], where: str) -> int | None:
    """Given a client's attributes, return its own access token lifespan (None: empty or unset, the realm's)."""
    value = attributes.get(LIFESPAN_ATTRIBUTE)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ApiShapeError(f"{where}.attributes.{LIFESPAN_ATTRIBUTE}: expected str, got {type(value).__name__}")
    try:
        return int(value)
    except ValueError:  # empty: the realm's; anything else makes Keycloak fail the token request itself
        return None


def _strings(rep: Mapping[str, Any], name: str, where: str) -> tuple[str, ...]:
    """Given an object of an answer, return its list of strings ``name`` (empty when missing)."""
    values = get(rep, name, list, where, [])
    for i, v in enumerate(values):
        if not isinstance(v, str):
            raise ApiShapeError(f"{where}.{name}[{i}]: expected str, got {type(v).__name__}")
    return tuple(values)


@dataclass(frozen=True)
class Client:
    client_id: str
    enabled: bool
    public: bool
    bearer_only: bool
    direct_grants: bool
    standard_flow: bool
    redirect_uris: tuple[str, ...]
    root_url: str = ""
    service_account: bool = False
    access_token_lifespan: int | None = None  # the client's own, over the realm's (None: the realm's)

    @classmethod
    def from_api(cls, rep: Mapping[str, Any], where: str) -> Client:
        cid = get(rep, "clientId", str, where)
        w = f"{where} ({cid})"
        return cls(cid, get(rep, "enabled", bool, w, True), get(rep, "publicClient", bool, w, False),
                   get(rep, "bearerOnly", bool, w, False), get(rep, "directAccessGrantsEnabled", bool, w, False),
                   get(rep, "standardFlowEnabled", bool, w, True), _strings(rep, "redirectUris", w),
                   get(rep, "rootUrl", str, w, ""), get(rep, "serviceAccountsEnabled", bool, w, False),
                   _lifespan(get(rep, "attributes", Mapping, w, {}), w))

    def resolved(self, uri: str) -> str:
        """Given one of the client's redirect URIs, return it as Keycloak matches it: a path (``/…``) is appended
        to the client's Root URL when that is set and not one of Keycloak's own (``${authBaseUrl}``); without a
        Root URL it stays a path on Keycloak's own origin."""
        if uri.startswith("/") and self.root_url and not self.root_url.startswith("${"):
            return self.root_url + uri
        return uri

    def shown(self, uri: str) -> str:
        """Given a redirect URI, return it for a finding's message: a path with the Root URL it resolves against."""
        full = self.resolved(uri)
        return uri if full == uri else f"{uri} (Root URL {self.root_url})"


@dataclass(frozen=True)
class LdapFederation:
    name: str
    url: str
    start_tls: bool
    enabled: bool

    def plain_urls(self) -> list[str]:
        """Return the connection URLs in clear: ``ldap://`` without StartTLS. Keycloak takes several URLs separated
        by spaces (failover), so a fallback in clear behind an ``ldaps://`` one counts too."""
        if self.start_tls:
            return []
        return [u for u in self.url.split() if u.lower().startswith("ldap://")]

    @classmethod
    def from_api(cls, rep: Mapping[str, Any], where: str) -> LdapFederation | None:
        """Given a user-storage component, return its LDAP settings (None for another provider)."""
        if get(rep, "providerId", str, where, "") != "ldap":
            return None
        name = get(rep, "name", str, where)
        w = f"{where} ({name}).config"
        conf = get(rep, "config", Mapping, where, {})

        def one(key: str, default: str) -> str:
            v = conf.get(key)
            if v is None or v == []:
                return default
            if not isinstance(v, list) or not isinstance(v[0], str):
                raise ApiShapeError(f"{w}.{key}: expected a list of strings, got {type(v).__name__}")
            return v[0]

        return cls(name, one("connectionUrl", ""), one("startTls", "false").lower() == "true",
                   one("enabled", "true").lower() == "true")


@dataclass(frozen=True)
class AdminUser:
    username: str
    roles: tuple[str, ...]
    otp: bool


@dataclass(frozen=True)
class JmlCase:
    username: str
    ldap_dn: str | None
    reason: str  # "disabled in LDAP" | "missing in LDAP"
    federated: bool


@dataclass
class RealmData:
    settings: RealmSettings
    clients: list[Client] = field(default_factory=list)
    ldap: list[LdapFederation] = field(default_factory=list)
    admins: list[AdminUser] = field(default_factory=list)
    jml: list[JmlCase] | None = None  # None: not checked (no ldap_source)
    users: int = 0


SsoCheck = Callable[[RealmData, SsoRuleSettings, "SsoRule"], Iterable[Finding]]


@dataclass(frozen=True)
class SsoRule:
    info: RuleInfo
    check: SsoCheck

    def found(self, subject: str, message: str, **evidence: Any) -> Finding:
        return Finding(self.info, subject, message, evidence)


SSO_RULES: dict[str, SsoRule] = {}


def sso_rule(id: str, severity: str, scope: str, title: str, description: str, remediation: str):
    """Register the decorated check under ``id`` with its metadata."""
    def register(fn: SsoCheck) -> SsoCheck:
        if id in SSO_RULES:
            raise ValueError(f"duplicate rule id {id}")
        SSO_RULES[id] = SsoRule(RuleInfo(id, severity, title, description, remediation, scope), fn)
        return fn
    return register


def check_realm(data: RealmData, settings: SsoRuleSettings) -> list[Finding]:
    """Given a realm's snapshot and the thresholds, return the findings of every rule not disabled."""
    out: list[Finding] = []
    for rid, r in SSO_RULES.items():
        if rid not in settings.disabled:
            out.extend(r.check(data, settings, r))
    return out


# -- realm settings ------------------------------------------------------------------------------

@sso_rule("SSO-BF-001", "high", "realm", "Brute-force detection disabled",
          "The realm does not lock or slow down an account after repeated failed logins, so passwords can be "
          "guessed online at the speed the server answers.",
          "Realm settings → Security defenses → Brute force detection: enable it (lockout permanently or "
          "temporarily after, e.g., 5 failures).")
def _brute_force(d: RealmData, s: SsoRuleSettings, r: SsoRule) -> Iterable[Finding]:
    if not d.settings.brute_force:
        yield r.found(d.settings.name, "brute-force detection is off", bruteForceProtected=False)


# Measured on Keycloak 26.5.6 (failureFactor 3, six wrong passwords 1.2 s apart, then the right one): a
# temporary lockout with waitIncrementSeconds 0, or maxFailureWaitSeconds 0, let the right password in (200)
# where the defaults (60 s, 900 s) refused it; a permanent lockout refused it whatever the wait.
@sso_rule("SSO-BF-002", "high", "realm", "Brute-force detection never locks",
          "Brute-force detection is on, but its temporary lockout lasts 0 seconds (wait increment or maximum wait "
          "of 0): Keycloak lets the next guess through at once, as if detection were off.",
          "Realm settings → Security defenses → Brute force detection: set the wait increment and the maximum "
          "wait above 0 (Keycloak's defaults: 1 minute and 15 minutes), or lock out permanently.")
def _brute_force_no_lockout(d: RealmData, s: SsoRuleSettings, r: SsoRule) -> Iterable[Finding]:
    wait = d.settings.temporary_lockout_seconds()
    if d.settings.brute_force and wait is not None and wait <= 0:
        yield r.found(d.settings.name, f"a lockout lasts {max(wait, 0)} s (wait increment "
                      f"{d.settings.wait_increment} s, maximum wait {d.settings.max_failure_wait} s)",
                      waitIncrementSeconds=d.settings.wait_increment,
                      maxFailureWaitSeconds=d.settings.max_failure_wait)


@sso_rule("SSO-BF-003", "medium", "realm", "Brute-force detection allows too many failures",
          "Brute-force detection locks an account only after more failed logins than max_login_failures: many "
          "guesses per account before any lockout (Keycloak's own default is 30; 1000000 is accepted too).",
          "Realm settings → Security defenses → Brute force detection → Max login failures: at most "
          "max_login_failures (e.g. 5 to 10).")
def _brute_force_failures(d: RealmData, s: SsoRuleSettings, r: SsoRule) -> Iterable[Finding]:
    factor = d.settings.failure_factor
    if d.settings.brute_force and factor is not None and factor > s.max_login_failures:
        yield r.found(d.settings.name, f"locks after {factor} failed logins (limit {s.max_login_failures})",
                      failureFactor=factor)


# Keycloak's `length` policy without a value (LengthPasswordPolicyProviderFactory's default).
DEFAULT_LENGTH = 8


def password_min_length(policy: str) -> int:
    """Given a realm's passwordPolicy string, return its minimum length (0 when it sets none).

    Read as Keycloak reads it (PasswordPolicy.parse): policies joined by `` and ``, each ``name`` or
    ``name(value)``, the last of a name holding; ``length`` alone is 8. A ``length(20)`` inside another
    policy's value (``regexPattern(… length(20) …)``) sets no length."""
    found = 0
    for part in policy.split(" and "):
        name, paren, value = part.strip().partition("(")
        if name.strip() != "length":
            continue
        value = value[:-1] if paren else ""
        found = DEFAULT_LENGTH if not paren else int(value) if value.isdigit() else 0
    return found


@sso_rule("SSO-PWD-001", "medium", "realm", "Weak password policy",
          "The realm's password policy sets no minimum length, or a minimum below the configured one, for "
          "local users (federated users follow the directory's policy).",
          "Realm settings → Authentication → Policies → Password policy: add Minimum length (12 or more), "
          "Not username and Password blacklist.")
def _password_policy(d: RealmData, s: SsoRuleSettings, r: SsoRule) -> Iterable[Finding]:
    n = password_min_length(d.settings.password_policy)
    if n < s.min_password_length:
        what = f"minimum length {n}" if n else "no minimum length"
        yield r.found(d.settings.name, f"password policy has {what} (required {s.min_password_length})",
                      passwordPolicy=d.settings.password_policy, min_length=n)


LOGIN_EVENT_TYPES = frozenset({"LOGIN", "LOGIN_ERROR"})


@sso_rule("SSO-EVT-001", "high", "realm", "Login events not saved",
          "The realm does not store its login events: failed and successful logins leave no trace an "
          "investigation or `citydc audit auth` can read (Keycloak's default).",
          "Realm settings → Events → User events settings: Save events on, with an expiration of at least "
          "the configured days.")
def _events_saved(d: RealmData, s: SsoRuleSettings, r: SsoRule) -> Iterable[Finding]:
    st = d.settings
    if not st.events_enabled:
        yield r.found(st.name, "login events are not saved", eventsEnabled=False)
    elif st.enabled_event_types and (left_out := sorted(LOGIN_EVENT_TYPES - set(st.enabled_event_types))):
        # Saved events restricted to a list of types that leaves logins out: on, yet nothing to audit.
        yield r.found(st.name, f"login events are not saved: {', '.join(left_out)} not among the saved event types",
                      enabledEventTypes=list(st.enabled_event_types))


@sso_rule("SSO-EVT-002", "medium", "realm", "Login events expire too soon",
          "Saved login events are deleted sooner than the configured retention: an incident found later "
          "cannot be traced back.",
          "Realm settings → Events → User events settings: raise Expiration to the retention the security "
          "policy requires.")
def _events_expiry(d: RealmData, s: SsoRuleSettings, r: SsoRule) -> Iterable[Finding]:
    exp = d.settings.events_expiration
    # None, 0 or a negative expiration (Keycloak takes -5): events are kept until deleted.
    if d.settings.events_enabled and exp is not None and 0 < exp < s.min_event_expiration_days * 86400:
        yield r.found(d.settings.name, f"login events expire after {exp // 86400} days {exp % 86400 // 3600} h "
                                       f"(required {s.min_event_expiration_days} days)", eventsExpiration=exp)


@sso_rule("SSO-ADM-001", "high", "realm", "Admin events not saved",
          "Changes made through the admin console or API (role grants, user changes, client changes) are "
          "not recorded, so who changed what cannot be established.",
          "Realm settings → Events → Admin events settings: Save events on.")
def _admin_events(d: RealmData, s: SsoRuleSettings, r: SsoRule) -> Iterable[Finding]:
    if not d.settings.admin_events:
        yield r.found(d.settings.name, "admin events are not saved", adminEventsEnabled=False)


@sso_rule("SSO-ADM-002", "medium", "realm", "Admin events include representations",
          "Admin events store the full JSON of each change (Include representation): a password reset or a "
          "client secret set through the API can end up in the event store and in every export of it.",
          "Realm settings → Events → Admin events settings: Include representation off.")
def _admin_details(d: RealmData, s: SsoRuleSettings, r: SsoRule) -> Iterable[Finding]:
    if d.settings.admin_events and d.settings.admin_events_details:
        yield r.found(d.settings.name, "admin events include the changed objects' representation",
                      adminEventsDetailsEnabled=True)


@sso_rule("SSO-TOK-001", "medium", "realm", "Access tokens live too long",
          "A stolen access token stays valid for its whole lifespan; long lifespans also delay the effect "
          "of disabling an account. A client's own Access Token Lifespan (advanced settings) overrides the "
          "realm's.",
          "Realm settings → Tokens: Access Token Lifespan of a few minutes (5-15); Clients → the client → "
          "Advanced → Access Token Lifespan: empty (the realm's) or as short.")
def _token(d: RealmData, s: SsoRuleSettings, r: SsoRule) -> Iterable[Finding]:
    t = d.settings.access_token_lifespan
    if _token_too_long(t, s):
        yield r.found(d.settings.name, f"access token lifespan {_lifespan_text(t)} "
                                       f"(limit {s.max_access_token_seconds} s)", accessTokenLifespan=t)
    for c in _web(d, s):
        if (own := c.access_token_lifespan) is not None and _token_too_long(own, s):
            yield r.found(f"{d.settings.name}/client:{c.client_id}",
                          f"access token lifespan {_lifespan_text(own)} set on the client "
                          f"(limit {s.max_access_token_seconds} s)", **{LIFESPAN_ATTRIBUTE: own})


def _token_too_long(lifespan: int, s: SsoRuleSettings) -> bool:
    # A negative lifespan (-1) is no lifespan: Keycloak 26.5.6 then issued tokens lasting the SSO session (43200 s).
    return lifespan < 0 or lifespan > s.max_access_token_seconds


def _lifespan_text(lifespan: int) -> str:
    return f"{lifespan} s" if lifespan >= 0 else f"{lifespan} (none: tokens last as long as the SSO session)"


@sso_rule("SSO-TOK-002", "medium", "realm", "SSO sessions live too long",
          "The SSO session idle timeout or maximum lifespan (or, with Remember me on, the remembered sessions' "
          "own) is longer than the configured limit: an unattended browser stays logged in to every application.",
          "Realm settings → Sessions: SSO Session Idle 30-60 min, SSO Session Max within a working day, and the "
          "Remember Me idle / max as short (or Remember me off).")
def _session(d: RealmData, s: SsoRuleSettings, r: SsoRule) -> Iterable[Finding]:
    st = d.settings

    def too_long(idle: int, most: int) -> bool:
        return idle > s.max_sso_session_idle_seconds or most > s.max_sso_session_max_seconds

    limits = f"(limits {s.max_sso_session_idle_seconds} s, {s.max_sso_session_max_seconds} s)"
    remembered = st.remembered()
    if too_long(st.sso_idle, st.sso_max) or (remembered and too_long(*remembered)):
        what = f"SSO session idle {st.sso_idle} s, max {st.sso_max} s"
        evidence: dict[str, Any] = {"ssoSessionIdleTimeout": st.sso_idle, "ssoSessionMaxLifespan": st.sso_max}
        if remembered and too_long(*remembered):
            what += f"; remember-me sessions idle {remembered[0]} s, max {remembered[1]} s"
            evidence.update(rememberMe=True, ssoSessionIdleTimeoutRememberMe=st.remember_idle,
                            ssoSessionMaxLifespanRememberMe=st.remember_max)
        yield r.found(st.name, f"{what} {limits}", **evidence)


# -- clients -------------------------------------------------------------------------------------

_LOOPBACK = ("localhost", "127.0.0.1", "::1", "[::1]")


def wildcard_redirect(uri: str) -> bool:
    """Given a redirect URI, return True when it lets Keycloak send a code or token to a site of anyone's choice:
    ``*``, or a ``*`` at the end before the path starts (``https://app.example*`` also matches
    ``https://app.example.evil.com``).

    Keycloak (RedirectUtils) honours a ``*`` only at the end of a URI without a query, as a prefix match; any
    other ``*`` is a literal character (on 26.5.6, ``https://*.partner.example/cb`` refused
    ``https://evil.partner.example/cb``), so it lets nothing through. A trailing ``/*`` on a fixed origin is
    the documented prefix match (its own consoles use it) and is not reported.
    """
    uri = uri.strip()
    if uri in ("*", "/*"):
        return True
    if "://" not in uri or not uri.endswith("*") or "?" in uri:
        return False  # a path relative to Keycloak's origin (its consoles use /…/*), or no wildcard to Keycloak
    rest = uri[:-1].split("://", 1)[1]
    return "/" not in rest  # the prefix stops before the path: any host (or port) starting so matches


def _http_redirect(uri: str) -> bool:
    if not uri.lower().startswith("http://"):
        return False
    try:
        host = urlsplit(uri.replace("*", "x")).hostname or ""
    except ValueError:
        return True
    return host not in _LOOPBACK  # RFC 8252: native apps may use loopback http


def _web(d: RealmData, s: SsoRuleSettings) -> list[Client]:
    return [c for c in d.clients if c.enabled and not c.bearer_only and c.client_id not in s.ignored_clients]


@sso_rule("SSO-CLI-001", "high", "client", "Wildcard redirect URI",
          "A client accepts a redirect URI that is `*` or ends in a wildcard before its path (Keycloak's prefix "
          "match: `https://app.example*` also matches `https://app.example.evil.com`): an attacker can have "
          "authorization codes or tokens sent to a site of their choice.",
          "Clients → the client → Valid redirect URIs: list the application's exact callback URLs.")
def _wildcard(d: RealmData, s: SsoRuleSettings, r: SsoRule) -> Iterable[Finding]:
    for c in _web(d, s):
        bad = [c.shown(u) for u in c.redirect_uris if wildcard_redirect(c.resolved(u))]
        if bad:
            yield r.found(f"{d.settings.name}/client:{c.client_id}", f"wildcard redirect URI {', '.join(bad)}",
                          redirectUris=bad)


@sso_rule("SSO-CLI-002", "medium", "client", "Redirect URI over plain http",
          "A client accepts an http:// redirect URI to a non-loopback host: the authorization code or token "
          "crosses the network in clear.",
          "Clients → the client → Valid redirect URIs: https:// only (http only to 127.0.0.1 for native apps).")
def _http(d: RealmData, s: SsoRuleSettings, r: SsoRule) -> Iterable[Finding]:
    for c in _web(d, s):
        bad = [c.shown(u) for u in c.redirect_uris if _http_redirect(c.resolved(u))]
        if bad:
            yield r.found(f"{d.settings.name}/client:{c.client_id}", f"http redirect URI {', '.join(bad)}",
                          redirectUris=bad)


@sso_rule("SSO-CLI-003", "high", "client", "Public client with direct access grants",
          "A public client (no secret) allows the resource owner password grant: anyone can try passwords "
          "against the token endpoint through it, outside the login page's defences and second factor.",
          "Clients → the client → Capability config: Direct access grants off (use the authorization code "
          "flow with PKCE).")
def _public_dag(d: RealmData, s: SsoRuleSettings, r: SsoRule) -> Iterable[Finding]:
    for c in _web(d, s):
        if c.public and c.direct_grants:
            yield r.found(f"{d.settings.name}/client:{c.client_id}", "public client with direct access grants",
                          publicClient=True, directAccessGrantsEnabled=True)


# -- users ---------------------------------------------------------------------------------------

@sso_rule("SSO-MFA-001", "high", "user", "Administrator without a second factor",
          "A user holding an administrative role (configured admin_roles: a realm role, or a realm-management "
          "client role such as realm-admin) has no OTP credential: one phished password is full control.",
          "Have the user configure OTP (required action Configure OTP), or require OTP for administrators in "
          "the browser flow.")
def _mfa(d: RealmData, s: SsoRuleSettings, r: SsoRule) -> Iterable[Finding]:
    for a in d.admins:
        if not a.otp:
            yield r.found(f"{d.settings.name}/user:{a.username}",
                          f"administrator ({', '.join(a.roles)}) without OTP", roles=list(a.roles))


@sso_rule("SSO-JML-001", "high", "user", "Leaver still enabled in Keycloak",
          "An account disabled or missing in the directory (a leaver) is still enabled in Keycloak: a "
          "federated user whose LDAP link is stale, or a local user named like a disabled directory account. "
          "Existing sessions, offline tokens and local credentials keep working.",
          "Disable the user in Keycloak and revoke its sessions (Users → the user → Sessions → Sign out); for "
          "a federated user, run the federation's sync so Keycloak follows the directory.")
def _jml(d: RealmData, s: SsoRuleSettings, r: SsoRule) -> Iterable[Finding]:
    for c in d.jml or ():
        yield r.found(f"{d.settings.name}/user:{c.username}",
                      f"enabled in Keycloak, {c.reason} ({'federated' if c.federated else 'local user'})",
                      ldap_dn=c.ldap_dn, federated=c.federated)


# -- federation ----------------------------------------------------------------------------------

@sso_rule("SSO-LDAP-001", "critical", "federation", "LDAP federation without TLS",
          "The realm's LDAP user federation connects with ldap:// and no StartTLS: every login sends the "
          "user's password, and the bind password, in clear to the directory.",
          "User federation → the provider: use ldaps:// or turn on StartTLS, with the directory's CA in "
          "Keycloak's truststore.")
def _ldap_tls(d: RealmData, s: SsoRuleSettings, r: SsoRule) -> Iterable[Finding]:
    for f in d.ldap:
        if f.enabled and (plain := f.plain_urls()):
            yield r.found(f"{d.settings.name}/ldap:{f.name}", f"{' '.join(plain)} without StartTLS",
                          connectionUrl=f.url)
