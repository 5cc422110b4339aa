"""The HTML report of a real audit opens in headless Chromium (Debian ``chromium``): the screenshot is kept as a
test artifact (``<tmp>/ldap-report.png``) and the rendered DOM holds the summary and every finding."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import yaml

from citydc import execute
from citydc.lab import ports, slapd_data

pytestmark = pytest.mark.lab

CITYDC = str(Path(sys.executable).with_name("citydc"))
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def slapd(lab_up, lab_env) -> dict[str, str]:
    (status,) = lab_up("slapd")
    assert status.running
    return status.endpoints


def write_config(d: Path, slapd: dict[str, str]) -> Path:
    base = slapd_data.BASE_DN
    src = {"name": "city", "url": f"ldap://{ports.HOST}:{ports.SLAPD}", "bind_dn": slapd["bind_dn"],
           "bind_password": "env:CITYDC_LDAP_PASSWORD", "base_dn": base, "ca_file": slapd["ca_file"],
           "site": "siwei", "default_policy_dn": f"cn=default,ou=policies,{base}",
           "privileged_groups": [f"cn={g},ou=groups,{base}" for g in slapd_data.planted()["privileged_groups"]],
           "baseline_file": slapd["baseline"], "state_dir": str(d / "state")}
    path = d / "citydc.yaml"
    path.write_text(yaml.safe_dump({"sites": [{"id": "siwei", "name": "Siwei"}],
                                    "security_log": {"spool_dir": str(d / "spool")}, "ldap": [src]}))
    return path


def chromium(tmp: Path, *args: str) -> execute.Result:
    # --no-sandbox: the tests run as root, where Chromium's sandbox refuses to start.
    argv = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            f"--user-data-dir={tmp / 'chromium-profile'}", *args]
    return execute.run("chromium", argv, timeout=120, env={"HOME": str(tmp)})


def png_pixels(path: Path) -> tuple[int, int, bytes]:
    """Return (width, height, raw scanlines) of a PNG: enough to tell a rendered page from a blank one."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    return width, height, zlib.decompress(idat)


def test_html_report_renders_in_headless_chromium(slapd, tmp_path):
    cfg = write_config(tmp_path, slapd)
    html = tmp_path / "ldap-report.html"
    proc = subprocess.run([CITYDC, "--config", str(cfg), "audit", "ldap", "--html", str(html), "--fail-on", "none",
                           "--no-events"], capture_output=True, text=True, timeout=300, env=os.environ)
    assert proc.returncode == 0, proc.stderr
    shot = tmp_path / "ldap-report.png"
    res = chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,1800", html.as_uri())
    assert res.ok and shot.exists(), res.stderr[-2000:]
    width, height, raw = png_pixels(shot)
    assert (width, height) == (1280, 1800)
    assert len(set(raw[: 1280 * 4 * 400])) > 20  # text, badges and tables: not a blank page
    dom = chromium(tmp_path, "--dump-dom", html.as_uri())
    assert dom.ok, dom.stderr[-2000:]
    for planted in slapd_data.expected_findings(f"ldap://{ports.HOST}:{ports.SLAPD}"):
        assert planted[0] in dom.stdout
    assert "Posture score" in dom.stdout and "Summary by rule" in dom.stdout
    print(f"screenshot kept at {shot}")
