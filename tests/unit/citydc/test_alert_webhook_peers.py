"""The webhook receiver against misbehaving peers (exploratory test 3a): a Content-Length ``int`` refuses,
a peer gone before the answer, a stalled peer, too many connections, escape sequences in a field path,
posts over the limits and truncated groups (counted and logged), spool failures named by their cause.
Served for real on a loopback port, as in test_alert_webhook.py."""

from __future__ import annotations

import copy
import errno
import logging
import socket
import time

import pytest

from citydc import alert_webhook, web
from citydc.alert_ledger import Ledger
from citydc.alert_webhook import Receiver, server
from citydc.seclog import emit
from tests.unit.citydc.test_alert_webhook import PASSWORD, PAYLOAD, post, spooled


@pytest.fixture
def served(tmp_path, request):
    """Start a receiver with basic auth; yields (port, receiver, spool_dir, failures: list of exceptions to raise)."""
    spool_dir = tmp_path / "spool"
    failures: list[BaseException] = []

    def record(events: list[dict]) -> None:
        if failures:
            raise failures.pop()
        emit(events, spool_dir=spool_dir)

    receiver = Receiver(Ledger(tmp_path / "ledger.db"), record, spool=str(spool_dir))
    import bcrypt

    web_yml = tmp_path / "web.yml"
    web_yml.write_text("basic_auth_users:\n  alertmanager: "
                       + bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode() + "\n")
    srv = server(receiver, "127.0.0.1", 0)
    timeout = getattr(request, "param", None)
    if timeout:
        srv.RequestHandlerClass.timeout = timeout
    web.secure(srv, web.Web(web_yml, on_denied=receiver.denied))
    web.serve_in_thread(srv)
    yield srv.server_address[1], receiver, spool_dir, failures
    srv.shutdown()
    srv.server_close()


def raw(port: int, data: bytes, *, auth: bool = False) -> bytes:
    """Send raw bytes (after the auth header when asked), return all the server answered before closing."""
    if auth:
        import base64
        token = base64.b64encode(f"alertmanager:{PASSWORD}".encode())
        data = data.replace(b"\r\n\r\n", b"\r\nAuthorization: Basic " + token + b"\r\n\r\n", 1)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


BAD_LENGTH = b"POST /alerts HTTP/1.1\r\nHost: x\r\nContent-Length: \xb2\r\n\r\nab"


def test_a_content_length_int_refuses_gets_401_recorded_or_400_never_a_traceback(served, capfd):
    port, receiver, spool_dir, _ = served
    assert raw(port, BAD_LENGTH).startswith(b"HTTP/1.0 401")
    assert [e["event"]["action"] for e in spooled(spool_dir)] == ["alert-webhook-denied"]
    answer = raw(port, BAD_LENGTH, auth=True)
    assert answer.startswith(b"HTTP/1.0 400") and b"Content-Length" in answer and b"<!DOCTYPE" not in answer
    assert receiver.metrics.bad_requests.labels(web.BAD_LENGTH)._value.get() == 1
    assert "Traceback" not in capfd.readouterr().err


def test_a_peer_gone_before_the_answer_is_no_traceback(served, capfd):
    port, _, _, _ = served
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"POST /alerts HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
            s.shutdown(socket.SHUT_WR)
    post(port, PAYLOAD)  # served after them: their threads are done
    assert "Traceback" not in capfd.readouterr().err


@pytest.mark.parametrize("served", [0.3], indirect=True)
def test_a_stalled_peer_is_dropped(served, tmp_path):
    port, _, _, _ = served
    default = server(Receiver(Ledger(tmp_path / "other.db"), lambda events: None), "127.0.0.1", 0)
    try:  # the served handler's timeout is shortened for the test; by default it is READ_TIMEOUT_SECONDS
        web.secure(default, web.Web(None))
        assert default.RequestHandlerClass.timeout == web.READ_TIMEOUT_SECONDS
    finally:
        default.server_close()
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(b"POST /alerts HTTP/1.1\r\nHost: x\r\n")  # and nothing more
        assert s.recv(1024) == b""  # closed by the server (a hang would end in the client's TimeoutError)


def test_connections_over_the_cap_are_closed_unserved_and_counted(tmp_path, monkeypatch, request):
    monkeypatch.setattr(alert_webhook, "MAX_CONNECTIONS", 2)
    fixture = served.__wrapped__(tmp_path, request)
    port, receiver, _, _ = next(fixture)
    try:
        stalled = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(2)]
        for s in stalled:
            s.sendall(b"POST /alerts HTTP/1.1\r\n")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as third:
            assert third.recv(1024) == b""
        assert receiver.metrics.connections_refused._value.get() == 1
        for s in stalled:
            s.close()
        # The slots come back once the two threads see their peers gone: on a loaded machine (the unit tier runs
        # on every core) that can take longer than a burst of attempts, so the wait is bounded by time.
        deadline = time.monotonic() + 20
        while True:
            try:
                if post(port, PAYLOAD)[0] == 200:
                    break
            except (ConnectionError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail("no post served within 20 s after the stalled connections closed")
            time.sleep(0.05)
    finally:
        next(fixture, None)


def test_a_label_key_with_escapes_is_escaped_in_the_answer_and_the_log(served, caplog):
    port, _, _, _ = served
    body = copy.deepcopy(PAYLOAD)
    body["alerts"][0]["labels"] = {"alertname": "X", "\x1b[31mRED\x1b[0m\nERROR forged line" + "k" * 500: 5}
    with caplog.at_level(logging.WARNING, logger="citydc.alert_webhook"):
        status, text = post(port, body)
    assert status == 400 and "\\x1b[31mRED\\x1b[0m\\nERROR forged line" in text
    assert "\x1b" not in text and text.count("\n") == 1 and len(text) < 300
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == 1 and "\x1b" not in logged[0] and "\n" not in logged[0]


def test_a_post_over_the_limit_is_counted_and_logged_in_plain_text(served, monkeypatch, caplog):
    port, receiver, _, _ = served
    monkeypatch.setattr(alert_webhook, "MAX_BODY", 1000)
    body = copy.deepcopy(PAYLOAD)
    body["alerts"][0]["annotations"]["description"] = "d" * 2000
    with caplog.at_level(logging.WARNING, logger="citydc.alert_webhook"):
        status, text = post(port, body)
    assert status == 413 and text.startswith("body of ") and "over the limit of 1000" in text
    assert receiver.metrics.bad_requests.labels(web.TOO_LARGE)._value.get() == 1
    assert "refused (too_large)" in caplog.text and "not recorded" in caplog.text


def test_too_many_alerts_is_counted_by_its_reason(served, monkeypatch):
    port, receiver, _, _ = served
    body = copy.deepcopy(PAYLOAD)
    body["alerts"] = [dict(PAYLOAD["alerts"][0], fingerprint=f"{i:x}") for i in range(10_001)]
    assert post(port, body)[0] == 400
    assert receiver.metrics.bad_requests.labels("too_many_alerts")._value.get() == 1


def test_truncated_alerts_are_counted_logged_and_recorded(served, caplog):
    port, receiver, spool_dir, _ = served
    body = dict(PAYLOAD, truncatedAlerts=7)
    with caplog.at_level(logging.WARNING, logger="citydc.alert_webhook"):
        assert post(port, body)[0] == 200
    assert receiver.metrics.truncated._value.get() == 7
    assert "left out 7 alert(s)" in caplog.text
    assert spooled(spool_dir)[0]["citydc"]["alerts"]["truncated_alerts"] == 7


def test_spool_failures_name_the_cause_in_one_line(served, caplog):
    port, _, spool_dir, failures = served
    failures.append(OSError(errno.ENOSPC, "No space left on device", "/var/spool/citydc/seg-0000000001.jsonl"))
    with caplog.at_level(logging.ERROR, logger="citydc.alert_webhook"):
        assert post(port, PAYLOAD)[0] == 500
    assert (f"webhook post not recorded: spool {spool_dir}: No space left on device "
            "(/var/spool/citydc/seg-0000000001.jsonl); Alertmanager will retry") in caplog.text
    caplog.clear()
    failures.append(PermissionError(errno.EACCES, "Permission denied"))
    with caplog.at_level(logging.ERROR, logger="citydc.alert_webhook"):
        assert post(port, PAYLOAD, password="wrong")[0] == 401
    assert f"not recorded: spool {spool_dir}: Permission denied" in caplog.text
    assert all(r.exc_info is None for r in caplog.records)  # one line, no traceback


@pytest.mark.parametrize("starts", [1765000000, "2026-12-07", "2026-12-07T10:00:00"])
def test_times_alertmanager_never_writes_are_refused(served, starts):
    port, _, _, _ = served
    body = copy.deepcopy(PAYLOAD)
    body["alerts"][0]["startsAt"] = starts
    status, text = post(port, body)
    assert status == 400 and "alerts[0].startsAt" in text, text
    body["alerts"][0]["startsAt"] = "2026-12-07T10:00:00.123456789+08:00"
    assert post(port, body)[0] == 200

