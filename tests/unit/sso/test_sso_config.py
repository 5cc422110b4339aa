"""``sso:`` entries of kind keycloak are checked at load; entries without kind stay log-file sources."""

from __future__ import annotations

import pytest
import yaml

from citydc.config.loader import ConfigInvalid, load_text
from citydc.config.models import KeycloakSource, SsoLogSource

BASE = {"sites": [{"id": "siwei", "name": "Siwei"}],
        "ldap": [{"name": "dir", "url": "ldaps://d:636", "start_tls": False, "bind_dn": "cn=a", "base_dn": "dc=x",
                  "bind_password": "env:P", "site": "siwei"}]}
KC = {"kind": "keycloak", "name": "kc", "base_url": "https://sso.example", "realms": ["city"], "client_id": "audit",
      "client_secret": "env:KC_SECRET", "site": "siwei", "ldap_source": "dir"}


def load(sso: list[dict]):
    return load_text(yaml.safe_dump({**BASE, "sso": sso}), check_files=False)


def test_both_kinds_load():
    cfg = load([KC, {"name": "log", "log_path": "/var/log/kc.json", "site": "siwei"}])
    assert isinstance(cfg.sso[0], KeycloakSource) and isinstance(cfg.sso[1], SsoLogSource)
    assert cfg.sso[0].client_secret.reference == "env:KC_SECRET"


@pytest.mark.parametrize(("change", "message"), [
    ({"base_url": "ftp://sso"}, "http"), ({"base_url": "https://sso/admin"}, "no /admin"),
    ({"realms": []}, "realms"), ({"client_secret": "inline-secret"}, "secret reference"),
    ({"ldap_source": "nope"}, "unknown ldap source"), ({"site": "nowhere"}, "site"),
])
def test_bad_keycloak_entries_are_refused_at_load(change, message):
    with pytest.raises(ConfigInvalid, match=message):
        load([{**KC, **change}])
