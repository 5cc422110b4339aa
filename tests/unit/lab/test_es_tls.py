"""The TLS front's pure parts: openssl argv and the HAProxy config (the running front is in tests/lab)."""

from __future__ import annotations

from pathlib import Path

from citydc.lab import es_tls, ports


def test_haproxy_conf_terminates_tls_requires_auth_and_forwards_to_elasticsearch():
    conf = es_tls.haproxy_conf(Path("/lab/server.pem"), "pw-123")
    lines = [line.strip() for line in conf.splitlines()]
    assert f"bind 127.0.0.1:{ports.ELASTICSEARCH_TLS} ssl crt /lab/server.pem" in lines
    assert "user citydc-shipper insecure-password pw-123" in lines
    assert "http-request auth realm citydc-lab-elasticsearch unless { http_auth(es_users) }" in lines
    assert f"server es1 127.0.0.1:{ports.ELASTICSEARCH}" in lines
    # The auth line comes before the backend is chosen, and the password is not forwarded.
    assert lines.index("http-request del-header Authorization") > lines.index(
        "http-request auth realm citydc-lab-elasticsearch unless { http_auth(es_users) }")


def test_openssl_argv():
    assert es_tls.ca_argv(Path("/d/ca.key"), Path("/d/ca.crt"), "/CN=x") == (
        "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "/d/ca.key", "-out", "/d/ca.crt", "-days", "3650", "-subj", "/CN=x",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    assert es_tls.sign_argv(Path("s.csr"), Path("ca.crt"), Path("ca.key"), Path("s.crt"), Path("s.ext")) == (
        "openssl", "x509", "-req", "-in", "s.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "s.crt", "-days", "825", "-sha256", "-extfile", "s.ext")
    assert "subjectAltName=IP:127.0.0.1,DNS:localhost" in es_tls.SERVER_EXTENSIONS.splitlines()
