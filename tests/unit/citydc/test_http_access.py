"""The ``*_http`` settings of Prometheus and Alertmanager (alerting.prometheus_http, alerting.alertmanager_http,
report.prometheus_http): checked at load against their URL, turned into an SSL context and a basic auth header by
citydc.httpaccess with errors that name the setting and never the password, and handed to lb-rolling.yml by
``citydc play run`` with the password as a secret variable. Against real servers behind a web config:
tests/lab/test_web_clients_tls.py and tests/lab/test_play_lb.py."""

from __future__ import annotations

import base64
import ssl
import subprocess
from pathlib import Path

import pytest

from citydc.cli.play_cmd import _alertmanager_vars
from citydc.config.loader import ConfigInvalid, load_text
from citydc.httpaccess import HttpAccessError, explain, http_access
from citydc.play.runner import Tracker

SITES = "sites: [{id: siwei, name: Siwei}]\n"
SECRET = "s3cr3t-Pass:word"


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path]:
    """A CA, a client certificate and key signed by it, another key, and that key encrypted (openssl)."""
    d = tmp_path_factory.mktemp("pki")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
            str(d / "ca.key"), "-out", str(d / "ca.crt"), "-subj", "/CN=test CA", "-days", "2")
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
            str(d / "client.key"), "-out", str(d / "client.csr"), "-subj", "/CN=citydc")
    openssl("x509", "-req", "-in", str(d / "client.csr"), "-CA", str(d / "ca.crt"), "-CAkey", str(d / "ca.key"),
            "-CAcreateserial", "-out", str(d / "client.crt"), "-days", "2")
    openssl("genpkey", "-algorithm", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-out", str(d / "other.key"))
    openssl("pkey", "-in", str(d / "client.key"), "-aes256", "-passout", "pass:pw", "-out", str(d / "locked.key"))
    (d / "garbage.pem").write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    return {"ca": d / "ca.crt", "client": d / "client.crt", "client_key": d / "client.key",
            "other_key": d / "other.key", "locked_key": d / "locked.key", "garbage": d / "garbage.pem"}


def alerting(block: str) -> str:
    return SITES + "alerting:\n" + "".join(f"  {line}\n" for line in block.strip().splitlines())


def load_error(text: str) -> str:
    with pytest.raises(ConfigInvalid) as err:
        load_text(text)
    return str(err.value)


@pytest.mark.parametrize(("block", "where", "words"), [
    ("prometheus_url: https://p.example:9090\nprometheus_http: {username: citydc}", "alerting.prometheus_http",
     "username and password go together"),
    ("prometheus_url: https://p.example:9090\nprometheus_http: {password: 'env:P'}", "alerting.prometheus_http",
     "username and password go together"),
    ("alertmanager_url: https://a.example:9093\nalertmanager_http: {username: 'a:b', password: 'env:P'}",
     "alerting.alertmanager_http", "no ':' in the user name"),
    ("alertmanager_url: http://a.example:9093\nalertmanager_http: {username: u, password: 'env:P'}",
     "alerting.alertmanager_http", "would cross the network in clear"),
    ("prometheus_http: {username: u, password: 'env:P'}", "alerting.prometheus_http",
     "set without the URL they are for"),
], ids=["user-without-password", "password-without-user", "colon-in-user", "password-over-http", "no-url"])
def test_settings_that_do_not_fit_are_refused_at_load_naming_the_field(block: str, where: str, words: str) -> None:
    message = load_error(alerting(block))
    assert f"{where}: " in message and words in message, message


def test_tls_settings_need_an_https_url_and_cert_needs_key(pki) -> None:
    message = load_error(alerting(f"prometheus_url: http://127.0.0.1:9090\nprometheus_http: {{ca_file: {pki['ca']}}}"))
    assert "alerting.prometheus_http: " in message and "https://" in message, message
    message = load_error(alerting(f"prometheus_url: https://p:9090\nprometheus_http: {{cert_file: {pki['client']}}}"))
    assert "cert_file and key_file go together" in message, message
    message = load_error(SITES + f"report: {{prometheus_http: {{ca_file: {pki['ca']}}}}}\n")
    assert "report.prometheus_http: " in message and "set without the URL" in message, message


def test_basic_auth_over_http_to_loopback_is_allowed() -> None:
    for host in ("127.0.0.1", "localhost", "[::1]"):
        cfg = load_text(alerting(f"prometheus_url: http://{host}:9090\nprometheus_http: {{username: u, "
                                 "password: 'env:P'}"))
        assert cfg.alerting.prometheus_http.username == "u"


def test_access_builds_the_header_and_context(pki, monkeypatch) -> None:
    monkeypatch.setenv("CITYDC_T_PW", SECRET)
    cfg = load_text(alerting(f"prometheus_url: https://p.example:9090\nprometheus_http: {{ca_file: {pki['ca']}, "
                             f"cert_file: {pki['client']}, key_file: {pki['client_key']}, username: citydc, "
                             "password: 'env:CITYDC_T_PW'}"))
    access = http_access(cfg.alerting.prometheus_http, "alerting.prometheus_http", "https://p.example:9090")
    scheme, token = access.headers["Authorization"].split(" ")
    assert scheme == "Basic" and base64.b64decode(token).decode() == f"citydc:{SECRET}"
    assert isinstance(access.context, ssl.SSLContext) and access.context.verify_mode == ssl.CERT_REQUIRED
    assert SECRET not in repr(access)
    plain = http_access(load_text(SITES).alerting.prometheus_http, "alerting.prometheus_http", "http://p:9090")
    assert plain.context is None and plain.headers == {}


def test_access_errors_name_the_setting_and_never_the_password(pki, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("CITYDC_T_PW", SECRET)
    where = "alerting.prometheus_http"

    def settings(**fields):
        parts = ", ".join(f"{k}: {v}" for k, v in fields.items())
        return load_text(alerting(f"prometheus_url: https://p:9090\nprometheus_http: {{{parts}}}")
                         ).alerting.prometheus_http

    monkeypatch.delenv("CITYDC_T_PW")
    with pytest.raises(HttpAccessError, match=rf"^{where}\.password: "):
        http_access(settings(username="u", password="'env:CITYDC_T_PW'"), where, "https://p:9090")
    with pytest.raises(HttpAccessError, match=rf"^{where}\.ca_file: not a CA bundle"):
        http_access(settings(ca_file=pki["garbage"]), where, "https://p:9090")
    for key in (pki["other_key"], pki["locked_key"]):  # not the certificate's key; encrypted
        with pytest.raises(HttpAccessError, match=rf"^{where}\.cert_file/key_file: .* do not load together"):
            http_access(settings(cert_file=pki["client"], key_file=key), where, "https://p:9090")
    # The URL of a command-line option is checked too: basic auth never goes to a remote http:// URL.
    monkeypatch.setenv("CITYDC_T_PW", SECRET)
    with pytest.raises(HttpAccessError, match="cross the network in clear") as err:
        http_access(settings(username="u", password="'env:CITYDC_T_PW'"), where, "http://remote.example:9090")
    assert SECRET not in str(err.value)


def test_explain_says_what_a_tls_failure_usually_means() -> None:
    assert "set ca_file" in explain(ssl.SSLCertVerificationError("[SSL: CERTIFICATE_VERIFY_FAILED] x"))
    assert "client certificate" in explain(ssl.SSLEOFError("EOF occurred in violation of protocol (_ssl.c:2427)"))
    # the alert as TLS 1.2 and TLS 1.3 servers send it, whichever the client reads first (seen in CI)
    for alert in ("[SSL: SSLV3_ALERT_BAD_CERTIFICATE] sslv3 alert bad certificate (_ssl.c:2580)",
                  "[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert certificate required (_ssl.c:2580)"):
        assert "may require a client certificate" in explain(ssl.SSLError(1, alert)), alert
    # an SSLError caught as the OSError it is: its .reason is OpenSSL's bare reason code
    assert "may require a client certificate" in explain("SSLV3_ALERT_BAD_CERTIFICATE")
    assert explain(ConnectionRefusedError(111, "Connection refused")) == "[Errno 111] Connection refused"


def test_play_hands_the_alertmanager_settings_over_with_the_password_secret(pki, monkeypatch) -> None:
    monkeypatch.setenv("CITYDC_T_PW", SECRET)
    cfg = load_text(alerting(f"alertmanager_url: https://am:9093\nalertmanager_http: {{ca_file: {pki['ca']}, "
                             f"cert_file: {pki['client']}, key_file: {pki['client_key']}, username: citydc, "
                             "password: 'env:CITYDC_T_PW'}"))
    plain, secret = _alertmanager_vars(cfg.alerting, set())
    assert plain == {"alertmanager_url": "https://am:9093", "alertmanager_ca_file": str(pki["ca"]),
                     "alertmanager_cert_file": str(pki["client"]), "alertmanager_key_file": str(pki["client_key"]),
                     "alertmanager_username": "citydc"}
    assert secret == {"alertmanager_password": SECRET}
    # What the operator gives wins as a whole: the config's password never goes to another URL.
    assert _alertmanager_vars(cfg.alerting, {"alertmanager_url"}) == ({}, {})
    assert _alertmanager_vars(cfg.alerting, {"alertmanager_password"}) == ({}, {})
    assert _alertmanager_vars(load_text(SITES).alerting, set()) == ({}, {})
    monkeypatch.delenv("CITYDC_T_PW")
    with pytest.raises(SystemExit) as err:
        _alertmanager_vars(cfg.alerting, set())
    assert err.value.code == 2


def test_tracker_masks_secrets_added_after_it_started() -> None:
    tracker = Tracker(secrets=["first-secret"])
    tracker.add_secrets([SECRET, ""])
    event = {"event": "verbose", "stdout": f"url_password={SECRET} and first-secret"}
    tracker.handle(event)
    assert SECRET not in str(event) and "first-secret" not in str(event) and "***" in event["stdout"]
