from __future__ import annotations

import pytest

from citydc.config.models import SnmpV2c
from citydc.secrets import SecretRef, SecretUnavailable


def test_env_reference_resolves_only_on_reveal():
    ref = SecretRef.parse("env:CITYDC_TEST_SECRET")
    assert ref.reveal({"CITYDC_TEST_SECRET": "hunter2"}) == "hunter2"
    assert "hunter2" not in repr(ref) and "hunter2" not in str(ref)


def test_file_reference_reads_first_line(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("s3cr3t\nignored\n")
    assert SecretRef.parse(f"file:{secret}").reveal() == "s3cr3t"


def test_missing_env_variable_names_the_variable_not_a_value():
    with pytest.raises(SecretUnavailable, match="CITYDC_NOPE is not set"):
        SecretRef.parse("env:CITYDC_NOPE").reveal({})


@pytest.mark.parametrize("text", ["hunter2", "env:", "vault:x", "env:BAD-NAME"])
def test_inline_or_malformed_secret_is_refused_without_echo(text):
    with pytest.raises(ValueError) as exc:
        SecretRef.parse(text)
    assert text not in str(exc.value) or text in ("env:",)


def test_model_dump_and_json_show_only_the_reference():
    model = SnmpV2c(community="env:CITYDC_TEST_COMMUNITY")
    assert model.model_dump(mode="json") == {"version": "2c", "community": "env:CITYDC_TEST_COMMUNITY"}
    assert "env:CITYDC_TEST_COMMUNITY" in model.model_dump_json()
