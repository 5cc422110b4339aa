"""Benchmark: ``citydc audit ldap`` on 100,000 users against ``ldapsearch`` dumping the same attributes, side by side.

Starts its own slapd (lab service ``slapd-bench``: the lab's config, 50,000 users per site plus the planted
problems, loaded with ``slapadd -q``) on 127.0.0.1:13390. Both sides talk to the same server over StartTLS
(certificate verified) with paged results of 1000 and ask for the same attributes of the same accounts:

- peer: ``ldapsearch -ZZ -E pr=1000/noprompt`` of the audit's attributes, output to /dev/null;
- citydc: the whole ``citydc audit ldap`` command (config, posture probes, policies, groups, the bulk read,
  every rule, findings to the security log, run file, metrics).

Before timing, the project's packages are byte-compiled (``compileall``), as a wheel install does: with
``PYTHONDONTWRITEBYTECODE`` set (this machine's environment) every run of the command would otherwise
compile its ~45 modules from source again (about 0.15 s of CPU per run, measured).
Rounds alternate the order; the report gives medians of wall time and CPU (user+sys of the client processes).
``--ldap3`` also times one audit with ``bulk_reader: ldap3`` and profiles where ldap3's time goes.
The last line is ``RATIO audit_vs_ldapsearch_dump <citydc wall / ldapsearch wall>``.

    python bench/ldap_audit.py [--rounds 3] [--users-per-site 50000] [--ldap3]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from citydc.lab import ports, slapd_data
from citydc.lab.base import LabContext
from citydc.lab.slapd import AUDITOR_DN, Slapd
from citydc.sso.model import ACCOUNT_ATTRIBUTES

CITYDC = str(Path(sys.executable).with_name("citydc"))
FILTER = "(|(objectClass=posixAccount)(objectClass=inetOrgPerson))"


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Run argv with stdout to /dev/null; return (wall, CPU of the child). Fail loudly."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    proc = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"bench: {argv[:6]} exited {proc.returncode}: {proc.stderr.decode()[-800:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def byte_compile() -> None:
    """Byte-compile citydc's own packages (they live in several source folders), as installing the wheel does."""
    import compileall
    import importlib

    for name in ("citydc", "citydc.sso", "citydc.lab", "citydc.collectors", "citydc.backup"):
        for folder in importlib.import_module(name).__path__:
            compileall.compile_dir(folder, quiet=1)


def write_config(work: Path, svc: Slapd, ctx: LabContext, reader: str) -> Path:
    base = slapd_data.BASE_DN
    src = {"name": "bench", "url": svc.url(), "bind_dn": AUDITOR_DN, "bind_password": "env:CITYDC_LDAP_PASSWORD",
           "base_dn": base, "ca_file": str(svc.ca_file(ctx)), "site": "siwei", "account_filter": FILTER,
           "default_policy_dn": f"cn=default,ou=policies,{base}", "bulk_reader": reader,
           "privileged_groups": [f"cn={g},ou=groups,{base}" for g in slapd_data.planted()["privileged_groups"]],
           "baseline_file": str(svc.baseline_file(ctx)), "state_dir": str(work / "state"),
           "textfile_dir": str(work / "textfile")}
    path = work / f"citydc-{reader}.yaml"
    path.write_text(yaml.safe_dump({"sites": [{"id": "siwei", "name": "Siwei"}],
                                    "security_log": {"spool_dir": str(work / "spool")}, "ldap": [src]}))
    return path


def profile_ldap3(svc: Slapd, ctx: LabContext) -> str:
    """Profile one ldap3 paged search of the audit's attributes; return the top of the profile."""
    import ssl

    import ldap3

    tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(svc.ca_file(ctx)))
    conn = ldap3.Connection(ldap3.Server(ports.HOST, svc.port, tls=tls, get_info=ldap3.NONE), user=AUDITOR_DN,
                            password=ports.LAB_ENV["CITYDC_LDAP_PASSWORD"])
    conn.open()
    conn.start_tls()
    conn.bind()
    prof = cProfile.Profile()
    prof.enable()
    n = sum(1 for _ in conn.extend.standard.paged_search(slapd_data.BASE_DN, FILTER,
                                                         attributes=list(ACCOUNT_ATTRIBUTES), paged_size=1000,
                                                         generator=True))
    prof.disable()
    conn.unbind()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(12)
    return f"ldap3 paged search: {n} entries\n" + out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--users-per-site", type=int, default=50_000)
    parser.add_argument("--ldap3", action="store_true", help="also time and profile the ldap3 bulk reader")
    args = parser.parse_args()
    byte_compile()
    ctx = LabContext()
    svc = Slapd("slapd-bench", ports.SLAPD_BENCH, ports.SLAPD_BENCH_LDAPS,
                slapd_data.DirectorySpec(users_per_site=args.users_per_site))
    t0 = time.monotonic()
    svc.up(ctx)
    print(f"slapd-bench: {2 * args.users_per_site} users built, loaded and started in {time.monotonic() - t0:.1f} s")
    work = Path(tempfile.mkdtemp(prefix="citydc-bench-ldap-"))
    env = {**os.environ, **ports.LAB_ENV, "LDAPTLS_CACERT": str(svc.ca_file(ctx)), "LDAPTLS_REQCERT": "demand"}
    pw = work / "pw"
    pw.write_text(ports.LAB_ENV["CITYDC_LDAP_PASSWORD"])
    pw.chmod(0o600)
    dump = ["ldapsearch", "-LLL", "-o", "ldif-wrap=no", "-x", "-ZZ", "-H", svc.url(), "-D", AUDITOR_DN, "-y", str(pw),
            "-b", slapd_data.BASE_DN, "-E", "pr=1000/noprompt", FILTER, *ACCOUNT_ATTRIBUTES]
    audit = [CITYDC, "--config", str(write_config(work, svc, ctx, "ldapsearch")), "audit", "ldap", "--json",
             "--fail-on", "none"]
    try:
        check = subprocess.run([*audit[:-2], "--no-events", "--fail-on", "none"], env=env, capture_output=True,
                               text=True, check=False)
        run = json.loads(check.stdout)["runs"][0]
        print(f"audit: {run['accounts']} accounts, {len(run['findings'])} findings, score {run['score']}")
        out = subprocess.run(dump, env=env, capture_output=True, check=True).stdout
        dns = [ln for ln in out.split(b"\n") if ln.startswith(b"dn:")]
        print(f"ldapsearch dump: {len(dns)} entries, {len(set(dns))} distinct DNs, {len(out) / 1e6:.1f} MB")
        walls: dict[str, list[float]] = {"ldapsearch": [], "citydc": []}
        cpus: dict[str, list[float]] = {"ldapsearch": [], "citydc": []}
        for r in range(args.rounds):
            order = [("ldapsearch", dump), ("citydc", audit)]
            for name, argv in order if r % 2 == 0 else reversed(order):
                wall, cpu = timed(argv, env)
                walls[name].append(wall)
                cpus[name].append(cpu)
                print(f"round {r + 1}: {name:10} wall {wall:6.2f} s  cpu {cpu:6.2f} s")
        med = {k: statistics.median(v) for k, v in walls.items()}
        medc = {k: statistics.median(v) for k, v in cpus.items()}
        print(f"median ldapsearch dump: wall {med['ldapsearch']:.2f} s, client cpu {medc['ldapsearch']:.2f} s")
        print(f"median citydc audit:    wall {med['citydc']:.2f} s, client cpu {medc['citydc']:.2f} s "
              "(ldapsearch child included)")
        if args.ldap3:
            l3 = [CITYDC, "--config", str(write_config(work, svc, ctx, "ldap3")), "audit", "ldap", "--no-events",
                  "--fail-on", "none"]
            wall, cpu = timed(l3, env)
            print(f"citydc audit with bulk_reader ldap3: wall {wall:.2f} s, cpu {cpu:.2f} s")
            print(profile_ldap3(svc, ctx))
        print(f"RATIO audit_vs_ldapsearch_dump {med['citydc'] / med['ldapsearch']:.2f}")
    finally:
        svc.down(ctx)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
