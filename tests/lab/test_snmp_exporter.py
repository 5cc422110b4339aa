"""The SNMP exporter against snmpsim devices from the lab (real agents, real HTTP).

Proves: every exported value of the static recordings (real devices, and the generated agents whose
ifNumber.0 is below and above their ifTable's row count) equals what net-snmp's snmpbulkwalk reads
from the same agent, on the fast v2c path and on pysnmp, at the static-column refresh and on the
cached path, and over SNMPv3 against ``snmpbulkwalk -v3``; v3 authPriv works (SHA-256/AES-128 and
SHA-512/AES-256); a wrong v3 key is an authentication failure, a wrong community and a slow
device are timeouts, and none of them delays the other targets.
"""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from threading import Thread

import pytest
from prometheus_client.parser import text_string_to_metric_families

from citydc import execute
from citydc.collectors.snmp.exporter import Exporter, serve
from citydc.config.models import Config
from citydc.lab.snmpd import client_conf_dir
from citydc.lab.snmpsim import (
    RECORDED,
    bulkwalk_argv,
    lab_config,
    lab_snmp_auth,
    lab_snmp_env,
    parse_bulkwalk,
    v3_client_conf_dir,
)

pytestmark = pytest.mark.lab

IF, IFX = "1.3.6.1.2.1.2.2.1", "1.3.6.1.2.1.31.1.1.1"
COL = {"ifDescr": f"{IF}.2", "ifSpeed": f"{IF}.5", "ifAdminStatus": f"{IF}.7", "ifOperStatus": f"{IF}.8",
       "ifInOctets": f"{IF}.10", "ifInUcastPkts": f"{IF}.11", "ifInDiscards": f"{IF}.13", "ifInErrors": f"{IF}.14",
       "ifOutOctets": f"{IF}.16", "ifOutUcastPkts": f"{IF}.17", "ifOutDiscards": f"{IF}.19",
       "ifOutErrors": f"{IF}.20", "ifName": f"{IFX}.1", "ifInMulticastPkts": f"{IFX}.2",
       "ifInBroadcastPkts": f"{IFX}.3", "ifOutMulticastPkts": f"{IFX}.4", "ifOutBroadcastPkts": f"{IFX}.5",
       "ifHCInOctets": f"{IFX}.6", "ifHCInUcastPkts": f"{IFX}.7", "ifHCInMulticastPkts": f"{IFX}.8",
       "ifHCInBroadcastPkts": f"{IFX}.9", "ifHCOutOctets": f"{IFX}.10", "ifHCOutUcastPkts": f"{IFX}.11",
       "ifHCOutMulticastPkts": f"{IFX}.12", "ifHCOutBroadcastPkts": f"{IFX}.13", "ifHighSpeed": f"{IFX}.15",
       "ifAlias": f"{IFX}.18"}
# metric (and cast label) -> (64-bit column, 32-bit column), written out here independently of the code.
EXPECTED_COUNTERS = {
    ("citydc_snmp_if_receive_bytes", None): ("ifHCInOctets", "ifInOctets"),
    ("citydc_snmp_if_transmit_bytes", None): ("ifHCOutOctets", "ifOutOctets"),
    ("citydc_snmp_if_receive_packets", "unicast"): ("ifHCInUcastPkts", "ifInUcastPkts"),
    ("citydc_snmp_if_receive_packets", "multicast"): ("ifHCInMulticastPkts", "ifInMulticastPkts"),
    ("citydc_snmp_if_receive_packets", "broadcast"): ("ifHCInBroadcastPkts", "ifInBroadcastPkts"),
    ("citydc_snmp_if_transmit_packets", "unicast"): ("ifHCOutUcastPkts", "ifOutUcastPkts"),
    ("citydc_snmp_if_transmit_packets", "multicast"): ("ifHCOutMulticastPkts", "ifOutMulticastPkts"),
    ("citydc_snmp_if_transmit_packets", "broadcast"): ("ifHCOutBroadcastPkts", "ifOutBroadcastPkts"),
    ("citydc_snmp_if_receive_errors", None): (None, "ifInErrors"),
    ("citydc_snmp_if_transmit_errors", None): (None, "ifOutErrors"),
    ("citydc_snmp_if_receive_discards", None): (None, "ifInDiscards"),
    ("citydc_snmp_if_transmit_discards", None): (None, "ifOutDiscards"),
}


@pytest.fixture(scope="module")
def exporter(lab_up, lab_env, tmp_path_factory):
    lab_up("snmpsim", "snmpsim-switches", "snmpsim-slow", "snmpsim-reboot")
    os.environ.update(lab_snmp_env())
    os.environ["CITYDC_TEST_WRONG"] = "not-the-right-key"
    doc = lab_config(timeout_seconds=1.0, retries=1, scrape_timeout_seconds=5)
    v3 = dict(doc["snmp_auth"]["v3-sw-siwei-core1"])
    doc["snmp_auth"]["v3-wrong-key"] = {**v3, "auth_key": "env:CITYDC_TEST_WRONG"}
    doc["snmp_auth"]["v2c-wrong"] = {"version": "2c", "community": "env:CITYDC_TEST_WRONG"}
    cfg = Config.model_validate(doc)
    exp = Exporter(cfg)
    exp.start()
    server = serve(exp, "127.0.0.1", 0)
    Thread(target=server.serve_forever, daemon=True).start()
    yield cfg, f"http://127.0.0.1:{server.server_address[1]}", tmp_path_factory.mktemp("snmpconf")
    server.shutdown()
    exp.stop()


def scrape(base: str, **params: str) -> dict[str, list]:
    """Return {metric name: [(labels, value)]} of one /snmp scrape."""
    query = urllib.parse.urlencode(params)
    with urllib.request.urlopen(f"{base}/snmp?{query}", timeout=15) as resp:  # noqa: S310 - loopback
        text = resp.read().decode()
    out: dict[str, list] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def one(metrics: dict, name: str) -> float:
    ((_labels, value),) = metrics[name]
    return value


def walk(address: str, conf) -> dict[str, dict[int, int | bytes]]:
    """Return {column: {ifIndex: value}} read by net-snmp's snmpbulkwalk with the client config in ``conf``."""
    out = {}
    for name, oid in COL.items():
        res = execute.run("snmpbulkwalk", bulkwalk_argv(address, oid),
                          env={"SNMPCONFPATH": str(conf), "MIBS": ""}, timeout=30)
        assert res.ok, res.masked_stderr()
        prefix = tuple(int(x) for x in oid.split("."))
        out[name] = {o[len(prefix)]: v for o, v in parse_bulkwalk(res.stdout).items() if o[:len(prefix)] == prefix}
    return out


def assert_equals_walk(metrics: dict, ref: dict, device, what: str) -> None:
    """Every interface sample of one scrape equals the snmpbulkwalk reference, and no interface is missing."""
    assert one(metrics, "citydc_snmp_up") == 1, what
    indexes = set(ref["ifName"]) | set(ref["ifDescr"])
    assert one(metrics, "citydc_snmp_interfaces") == len(indexes), what
    checked = 0
    for (metric, cast), (hc, low) in EXPECTED_COUNTERS.items():
        exported = {int(lbl["ifIndex"]): (lbl, v) for lbl, v in metrics.get(metric + "_total", [])
                    if cast is None or lbl.get("cast") == cast}
        for i in indexes:
            source = hc if hc and i in ref[hc] else low
            if i not in ref[source]:
                assert i not in exported, f"{what}: {metric} {i}: exported without a value on the device"
                continue
            labels, value = exported[i]
            assert value == ref[source][i], f"{what}: {metric} ifIndex {i}"
            name = ref["ifName"].get(i, b"").decode("utf-8", "replace") or ref["ifDescr"][i].decode("utf-8", "replace")
            assert labels["ifName"] == name
            assert labels["ifAlias"] == ref["ifAlias"].get(i, b"").decode("utf-8", "replace")
            assert (labels["site"], labels["device"]) == (device.site, device.name)
            checked += 1
        assert set(exported) <= indexes, f"{what}: {metric} on interfaces the device does not have"
    for metric, column in (("citydc_snmp_if_oper_status", "ifOperStatus"),
                           ("citydc_snmp_if_admin_status", "ifAdminStatus")):
        exported = {int(lbl["ifIndex"]): v for lbl, v in metrics[metric]}
        assert exported == {i: ref[column][i] for i in indexes if i in ref[column]}, what
    speeds = {int(lbl["ifIndex"]): v for lbl, v in metrics["citydc_snmp_if_speed_bits_per_second"]}
    for i, low in ref["ifSpeed"].items():
        high = ref["ifHighSpeed"].get(i)
        assert speeds[i] == (high * 1e6 if low == 4294967295 and high is not None else low), what
    assert checked > len(indexes), what


# Static recordings polled over SNMPv3 too: snmpsim picks the data file by the v3 context name.
V3_RECORDINGS = (("hpe-procurve-6120xg", "v3-sw-siwei-core1"), ("juniper-mx960", "v3-sw-fengshan-core1"),
                 ("cisco-c3750", "v3-sw-siwei-core1"))


def v3_profile(recording: str, base: str) -> dict:
    """Return the auth profile (config dict) reading ``recording`` over SNMPv3 with the users of ``base``."""
    return {**lab_snmp_auth()[base], "context_name": recording}


@pytest.fixture(scope="module")
def paths(lab_up, lab_env):
    """One exporter per v2c path (fast, pysnmp), each served over HTTP, used by the snmpbulkwalk comparisons
    only: each target's first scrape there is the static-column refresh, its second the cached path."""
    lab_up("snmpsim")
    os.environ.update(lab_snmp_env())
    out, running = {}, []
    for path in ("fast", "pysnmp"):
        doc = lab_config(timeout_seconds=1.0, retries=1, scrape_timeout_seconds=5, v2c_path=path)
        for recording, base in V3_RECORDINGS:
            doc["snmp_auth"][f"v3-rec-{recording}"] = v3_profile(recording, base)
        cfg = Config.model_validate(doc)
        exp = Exporter(cfg)
        exp.start()
        server = serve(exp, "127.0.0.1", 0)
        Thread(target=server.serve_forever, daemon=True).start()
        running.append((server, exp))
        out[path] = (cfg, f"http://127.0.0.1:{server.server_address[1]}")
    yield out
    for server, exp in running:
        server.shutdown()
        exp.stop()


def refresh_then_cached(base: str, **params: str) -> list[tuple[str, dict]]:
    """Scrape a target twice; the second scrape must have run on the cached static columns."""
    first = scrape(base, **params)
    second = scrape(base, **params)
    assert one(second, "citydc_snmp_scrape_varbinds") < one(first, "citydc_snmp_scrape_varbinds"), \
        "the second scrape did not use the static-column cache"
    return [("refresh", first), ("cached", second)]


@pytest.mark.parametrize("path", ["fast", "pysnmp"])
@pytest.mark.parametrize("recording", RECORDED)
def test_every_exported_value_equals_snmpbulkwalk(paths, recording, path, tmp_path):
    cfg, base = paths[path]
    device = next(d for d in cfg.devices if d.name == f"rec-{recording}")
    ref = walk(device.address, client_conf_dir(recording, tmp_path))
    for poll, metrics in refresh_then_cached(base, target=device.address):
        assert_equals_walk(metrics, ref, device, f"{recording} via {path}, {poll}")


@pytest.mark.parametrize(("recording", "base_profile"), V3_RECORDINGS)
def test_every_v3_value_equals_snmpbulkwalk_v3(paths, recording, base_profile, tmp_path):
    cfg, base = paths["fast"]  # SNMPv3 always runs on pysnmp
    device = next(d for d in cfg.devices if d.name == f"rec-{recording}")
    conf = v3_client_conf_dir(v3_profile(recording, base_profile), tmp_path, dict(os.environ))
    ref = walk(device.address, conf)
    assert len(ref["ifName"]) >= 19
    for poll, metrics in refresh_then_cached(base, target=device.address, auth=f"v3-rec-{recording}"):
        assert_equals_walk(metrics, ref, device, f"{recording} over SNMPv3 ({base_profile}), {poll}")


def test_v3_authpriv_sha256_aes128_and_sha512_aes256(exporter):
    cfg, base, _ = exporter
    for name in ("sw-siwei-core1", "sw-fengshan-core1"):
        device = next(d for d in cfg.devices if d.name == name)
        auth = cfg.snmp_auth[device.snmp_auth]
        metrics = scrape(base, target=device.address)
        assert one(metrics, "citydc_snmp_up") == 1, name
        assert one(metrics, "citydc_snmp_interfaces") == 14
        rx = metrics["citydc_snmp_if_receive_bytes_total"]
        assert {lbl["ifName"] for lbl, _ in rx} >= {"Te1/1/1", "Gi1/0/1", "mgmt0"}
        assert (auth.auth_protocol, auth.priv_protocol) in (("SHA256", "AES"), ("SHA512", "AES256"))


def test_bad_devices_fail_alone_with_reasons_while_others_answer(exporter):
    cfg, base, _ = exporter
    good = [d for d in cfg.devices if d.name.startswith(("sw-siwei-acc", "sw-fengshan-acc", "rec-"))]
    core = next(d for d in cfg.devices if d.name == "sw-siwei-core1")
    acc = next(d for d in cfg.devices if d.name == "sw-siwei-acc1")
    slow = next(d for d in cfg.devices if d.name == "sw-fengshan-slow")
    bad = {"wrong-key": {"target": core.address, "auth": "v3-wrong-key"},
           "wrong-community": {"target": acc.address, "auth": "v2c-wrong"},
           "slow": {"target": slow.address}}

    def timed(params):
        started = time.monotonic()
        metrics = scrape(base, **params)
        return metrics, time.monotonic() - started

    with ThreadPoolExecutor(max_workers=len(good) + len(bad)) as pool:
        bad_futures = {k: pool.submit(timed, p) for k, p in bad.items()}
        good_futures = {d.name: pool.submit(timed, {"target": d.address}) for d in good}
        good_results = {k: f.result() for k, f in good_futures.items()}
        bad_results = {k: f.result() for k, f in bad_futures.items()}
    for name, (metrics, seconds) in good_results.items():
        assert one(metrics, "citydc_snmp_up") == 1, name
        assert seconds < 3.0, f"{name} took {seconds:.1f} s next to the bad devices"
    reasons = {}
    for name, (metrics, seconds) in bad_results.items():
        assert one(metrics, "citydc_snmp_up") == 0, name
        assert seconds < 5.5, f"{name} exceeded its budget: {seconds:.1f} s"
        assert "citydc_snmp_if_receive_bytes_total" not in metrics
        reasons[name] = {lbl["reason"] for lbl, v in metrics["citydc_snmp_scrape_errors"] if v > 0}
    assert reasons == {"wrong-key": {"auth"}, "wrong-community": {"timeout"}, "slow": {"timeout"}}


def test_32bit_only_device_exports_32bit_counters(exporter):
    cfg, base, _ = exporter
    device = next(d for d in cfg.devices if d.name == "sw-fengshan-old1")
    first = scrape(base, target=device.address)
    assert one(first, "citydc_snmp_up") == 1 and one(first, "citydc_snmp_interfaces") == 54
    rx = {lbl["ifName"]: v for lbl, v in first["citydc_snmp_if_receive_bytes_total"]}
    assert len(rx) == 54 and all(v < 2**32 for v in rx.values())
    assert {lbl["site"] for lbl, _ in first["citydc_snmp_up"]} == {"fengshan"}


def test_http_400_for_bad_parameters(exporter):
    _, base, _ = exporter
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{base}/snmp?target=127.0.0.1:11620&module=nope", timeout=5)  # noqa: S310
    assert err.value.code == 400 and b"unknown module 'nope'" in err.value.read()
