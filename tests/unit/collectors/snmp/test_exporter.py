"""Request parsing, HTTP status codes and rendering of the exporter (citydc.collectors.snmp.exporter)."""

import urllib.error
import urllib.request
from collections import Counter
from threading import Thread

import pytest

from citydc.collectors.snmp.collector import InterfaceRow, ScrapeResult
from citydc.collectors.snmp.engine import Engine
from citydc.collectors.snmp.exporter import BadRequest, Exporter, job_from_query, parse_query, serve
from citydc.config.models import Config


def config() -> Config:
    return Config.model_validate({
        "sites": [{"id": "siwei", "name": "Siwei"}],
        "snmp_auth": {"v2": {"version": "2c", "community": "env:CITYDC_TEST_COMMUNITY"}},
        "devices": [{"name": "sw1", "address": "127.0.0.1:1", "site": "siwei", "role": "access", "snmp_auth": "v2"},
                    {"name": "sw2", "address": "127.0.0.2", "site": "siwei", "role": "access"}],
    })


@pytest.mark.parametrize(("query", "message"), [
    ("", "missing parameter 'target'"),
    ("target=10.9.9.9", "not a device in citydc.yaml"),
    ("target=127.0.0.1:1&module=nope", "unknown module 'nope'"),
    ("target=127.0.0.1:1&auth=nope", "unknown auth profile 'nope'"),
    ("target=127.0.0.2", "has no snmp_auth"),
    ("target=127.0.0.1:1&bogus=1", "unknown parameter 'bogus'"),
    ("target=127.0.0.1:1&target=127.0.0.1:1", "given 2 times"),
    ("target=h:99999", "port must be 1-65535"),
])
def test_bad_parameters_say_what_is_wrong(query, message):
    with pytest.raises(BadRequest, match=message):
        job_from_query(Exporter(config()), query)


def test_good_parameters_default_to_the_devices_module_and_auth():
    job = job_from_query(Exporter(config()), "target=127.0.0.1:1")
    assert (job.device.name, job.module.name, job.auth_name) == ("sw1", "if_mib", "v2")
    assert parse_query("target=127.0.0.1:1&module=if_mib_bytes") == {"target": "127.0.0.1:1", "module": "if_mib_bytes"}


def test_the_engine_resolves_jobs_without_any_query_string():
    engine = Engine(config())
    job = engine.resolve("127.0.0.1:1", "if_mib_bytes")
    assert (job.device.name, job.module.name, job.auth_name) == ("sw1", "if_mib_bytes", "v2")
    with pytest.raises(BadRequest, match="unknown module"):
        engine.resolve("127.0.0.1:1", "nope")


def test_budget_follows_prometheus_scrape_timeout_header():
    exp = Exporter(config())
    assert exp.budget(None) == 9.5
    assert exp.budget("5") == 4.5
    assert exp.budget("garbage") == 9.5


def test_render_of_a_failed_scrape_has_up_zero_and_reason():
    exp = Exporter(config())
    job = job_from_query(exp, "target=127.0.0.1:1")
    text = exp.render(job, ScrapeResult(False, "auth", "x", 0.5, errors=Counter({"auth": 1}))).decode()
    assert 'citydc_snmp_up{device="sw1",site="siwei"} 0.0' in text
    assert 'citydc_snmp_scrape_errors{device="sw1",reason="auth",site="siwei"} 1.0' in text
    assert "citydc_snmp_if_" not in text


def test_render_escapes_label_values():
    exp = Exporter(config())
    job = job_from_query(exp, "target=127.0.0.1:1")
    result = ScrapeResult(True, rows=[InterfaceRow(1, "Gi0/1", 'to "core"\\1', {"receive_bytes": 5})])
    text = exp.render(job, result).decode()
    assert 'ifAlias="to \\"core\\"\\\\1"' in text
    assert "citydc_snmp_if_receive_bytes_total{" in text


def test_http_400_for_bad_parameters_and_own_metrics_on_metrics_path():
    exp = Exporter(config())
    exp.start()
    server = serve(exp, "127.0.0.1", 0)
    Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{base}/snmp?target=10.9.9.9", timeout=5)  # noqa: S310 - loopback test server
        assert err.value.code == 400
        assert b"not a device in citydc.yaml" in err.value.read()
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as resp:  # noqa: S310 - loopback test server
            body = resp.read().decode()
        assert 'citydc_snmp_exporter_requests_total{module="",outcome="bad_request",site=""} 1.0' in body
        assert "citydc_snmp_up" not in body
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{base}/nope", timeout=5)  # noqa: S310 - loopback test server
        assert err.value.code == 404
    finally:
        server.shutdown()
        exp.stop()


def test_unreadable_secret_is_a_down_scrape_not_a_crash(monkeypatch):
    monkeypatch.delenv("CITYDC_TEST_COMMUNITY", raising=False)
    exp = Exporter(config())
    exp.start()
    try:
        job = job_from_query(exp, "target=127.0.0.1:1")
        result = exp.poll(job, 2)
        assert not result.up and result.reason == "secret_unavailable"
        assert "CITYDC_TEST_COMMUNITY" in result.message
    finally:
        exp.stop()


@pytest.mark.parametrize(("v2c_path", "auth", "expected"), [
    ("fast", "v2", "fast_v2c"), ("pysnmp", "v2", "pysnmp"), ("fast", "v3", "pysnmp")])
def test_the_polling_path_is_counted_on_metrics(monkeypatch, v2c_path, auth, expected):
    monkeypatch.setenv("CITYDC_TEST_COMMUNITY", "unit-community")
    doc = config().model_dump(mode="json")
    doc["snmp"]["v2c_path"] = v2c_path
    doc["snmp_auth"]["v3"] = {"version": "3", "username": "u", "security_level": "noAuthNoPriv"}
    exp = Exporter(Config.model_validate(doc))
    exp.start()
    try:
        # Nothing answers on 127.0.0.1:1: the poll times out, but its path is already counted.
        result = exp.poll(exp.resolve("127.0.0.1:1", auth=auth), 0.3)
        assert not result.up and result.reason == "timeout"
        assert exp.registry.get_sample_value("citydc_snmp_exporter_polls_total",
                                             {"site": "siwei", "path": expected}) == 1
        other = {"fast_v2c": "pysnmp", "pysnmp": "fast_v2c"}[expected]
        assert exp.registry.get_sample_value("citydc_snmp_exporter_polls_total",
                                             {"site": "siwei", "path": other}) is None
    finally:
        exp.stop()


def test_a_failed_poll_says_why_in_a_comment_of_its_answer(monkeypatch):
    """curl of /snmp for a dead device shows the reason and its message, not only reason="timeout"; Prometheus'
    parser skips the comment and reads the same samples."""
    from prometheus_client.parser import text_string_to_metric_families

    monkeypatch.setenv("CITYDC_TEST_COMMUNITY", "unit-community")
    exp = Exporter(config())
    exp.start()
    server = serve(exp, "127.0.0.1", 0)
    Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/snmp?target=127.0.0.1:1"
        with urllib.request.urlopen(url, timeout=30) as resp:
            body = resp.read().decode()
    finally:
        server.shutdown()
        exp.stop()
    first = body.splitlines()[0]
    assert first.startswith("# citydc_snmp poll failed: timeout: no SNMP response"), first
    families = {f.name: f for f in text_string_to_metric_families(body)}
    assert families["citydc_snmp_up"].samples[0].value == 0
    assert "unit-community" not in body


def test_the_failure_comment_is_one_printable_line_and_absent_when_the_poll_worked():
    from citydc.collectors.snmp.exposition import failure_comment

    line = failure_comment(ScrapeResult(False, "error_status", "agent said \x1b[31mno\nsuch\x00 é" + "x" * 900))
    assert line.endswith(b"\n") and line.count(b"\n") == 1 and len(line) < 600
    assert line.startswith(b"# citydc_snmp poll failed: error_status: agent said ?[31mno?such? ?")
    assert failure_comment(ScrapeResult(True, message="partial")) == b""
    assert failure_comment(ScrapeResult(False, "timeout", "")) == b""
