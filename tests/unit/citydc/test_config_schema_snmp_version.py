"""The JSON Schema (``citydc config schema``) accepts what the loader accepts: ``version: 3`` unquoted (a YAML
number) in an SNMPv3 profile, as well as "3"; a version the loader refuses stays refused."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml

from citydc.config.loader import ConfigInvalid, load_text
from citydc.config.sample import json_schema

CONFIG = """\
sites: [{id: siwei, name: Siwei}]
snmp_auth:
  core-v3:
    version: VERSION
    username: poller
    security_level: noAuthNoPriv
"""


@pytest.mark.parametrize("version", ["3", "'3'"])
def test_schema_and_loader_agree_on_snmpv3(version: str) -> None:
    text = CONFIG.replace("VERSION", version)
    load_text(text)  # the loader accepts it
    jsonschema.validate(yaml.safe_load(text), json.loads(json_schema()))


@pytest.mark.parametrize("version", ["2", "4", "'v3'"])
def test_schema_and_loader_both_refuse_other_versions(version: str) -> None:
    text = CONFIG.replace("VERSION", version)
    with pytest.raises(ConfigInvalid):
        load_text(text)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(yaml.safe_load(text), json.loads(json_schema()))
