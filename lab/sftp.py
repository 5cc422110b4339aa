"""OpenSSH ``sshd`` on a loopback port serving SFTP: the lab's off-site site for restic repositories.

The server has its own host key, authorized key and config under the lab directory, so nothing in
``/etc/ssh`` or ``~/.ssh`` changes. Clients reach it through the lab's own ``ssh_config``
(``ssh -F <lab>/sftp/ssh_config``), which pins the port, key and known-hosts file.
"""

from __future__ import annotations

import getpass
import os
import pwd
import stat
import subprocess
from pathlib import Path

from citydc import execute
from citydc.lab import ports, processes
from citydc.lab.base import LabContext, LabError, Service, need_binaries

SSHD = "/usr/sbin/sshd"
SFTP_USER = "citydc"
HOST_ALIAS = "citydc-offsite"


def sshd_config(d: Path, port: int, user: str) -> str:
    """Given the service directory, port and login user, return the lab's sshd_config."""
    return "\n".join([
        f"Port {port}",
        f"ListenAddress {ports.HOST}",
        f"HostKey {d / 'host_ed25519'}",
        f"PidFile {d / 'sshd.pid'}",
        f"AuthorizedKeysFile {d / 'authorized_keys'}",
        f"AllowUsers {user}",
        "PermitRootLogin prohibit-password",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        # The lab directory lives under /tmp; StrictModes would reject its permissions.
        "StrictModes no",
        "UsePAM no",
        "X11Forwarding no",
        "AllowTcpForwarding no",
        "Subsystem sftp internal-sftp",
        "",
    ])


def ssh_client_config(d: Path, port: int, user: str) -> str:
    """Given the service directory, port and user, return an ssh_config for ``ssh -F``."""
    return "\n".join([
        f"Host {HOST_ALIAS} {ports.HOST}",
        f"  HostName {ports.HOST}",
        f"  Port {port}",
        f"  User {user}",
        f"  IdentityFile {d / 'client_ed25519'}",
        "  IdentitiesOnly yes",
        f"  UserKnownHostsFile {d / 'known_hosts'}",
        "  StrictHostKeyChecking yes",
        "  BatchMode yes",
        "  ConnectTimeout 5",
        "",
    ])


def useradd_argv(user: str) -> tuple[str, ...]:
    """Return the argv creating the lab's SFTP login as a system user without a home or shell."""
    return ("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", user)


def keygen_argv(path: Path) -> tuple[str, ...]:
    """Return the ssh-keygen argv creating an unencrypted ed25519 key at ``path``."""
    return ("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "citydc-lab", "-f", str(path))


def untraversable_ancestors(path: Path, uid: int, gids: set[int]) -> list[Path]:
    """Return the ancestors of ``path`` (not ``path`` itself) that ``uid`` cannot search (no x bit for it).

    sshd reads the authorized keys as the login user, and internal-sftp writes as that user, so the
    lab's SFTP login must be able to walk from ``/`` down to the lab directory.
    """
    blocked = []
    for parent in path.resolve().parents:
        st = parent.stat()
        if st.st_uid == uid:
            bit = stat.S_IXUSR
        elif st.st_gid in gids:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            blocked.append(parent)
    return sorted(blocked)


class Sftp(Service):
    record_children = False  # sshd: only the listener is the service; its children are per connection
    name = "sftp"
    description = "OpenSSH sshd with SFTP on loopback (off-site restic repositories)"
    ready_timeout = 20.0

    def user(self) -> str:
        """Return the login user, creating the lab's ``citydc`` system user when running as root."""
        if os.geteuid() != 0:
            return getpass.getuser()
        try:
            pwd.getpwnam(SFTP_USER)
        except KeyError:
            res = execute.run("useradd", useradd_argv(SFTP_USER), timeout=60)
            if not res.ok:
                raise LabError(f"useradd {SFTP_USER} failed: {res.stderr.strip()}") from None
        # useradd leaves the account locked ("!"), which sshd without PAM refuses even for key
        # logins; "*" means "no password" without the lock.
        res = execute.run("usermod", ("usermod", "-p", "*", SFTP_USER), timeout=60)
        if not res.ok:
            raise LabError(f"usermod {SFTP_USER} failed: {res.stderr.strip()}")
        return SFTP_USER

    def repo_root(self, ctx: LabContext) -> Path:
        """Return the directory the SFTP user writes repositories into."""
        return ctx.service_dir(self.name) / "repos"

    def ssh_config_path(self, ctx: LabContext) -> Path:
        return ctx.service_dir(self.name) / "ssh_config"

    def install(self, ctx: LabContext) -> None:
        need_binaries({SSHD: "openssh-server", "ssh": "openssh-client", "ssh-keygen": "openssh-client"}, ctx)

    def start(self, ctx: LabContext) -> subprocess.Popen:
        d = ctx.service_dir(self.name)
        user = self.user()
        for key in ("host_ed25519", "client_ed25519"):
            if not (d / key).exists():
                res = execute.run("ssh-keygen", keygen_argv(d / key), timeout=30)
                if not res.ok:
                    raise LabError(f"ssh-keygen failed: {res.stderr.strip()}")
        (d / "authorized_keys").write_text((d / "client_ed25519.pub").read_text())
        # sshd opens it as the login user, and citydc's umask (077) would leave it root-only.
        (d / "authorized_keys").chmod(0o644)
        host_pub = (d / "host_ed25519.pub").read_text().split()
        (d / "known_hosts").write_text(f"[{ports.HOST}]:{ports.SFTP} {host_pub[0]} {host_pub[1]}\n")
        (d / "sshd_config").write_text(sshd_config(d, ports.SFTP, user))
        self.ssh_config_path(ctx).write_text(ssh_client_config(d, ports.SFTP, user))
        repos = self.repo_root(ctx)
        repos.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            entry = pwd.getpwnam(user)
            blocked = untraversable_ancestors(ctx.root, entry.pw_uid, {entry.pw_gid})
            if blocked:
                # Failing here names the cause; otherwise sshd refuses every key and the lab only
                # reports that the service never became ready.
                modes = ", ".join(f"{p} (mode {p.stat().st_mode & 0o777:04o})" for p in blocked)
                raise LabError(f"the lab's SFTP login {user!r} cannot reach the lab directory {ctx.root}: "
                               f"it cannot search {modes}. Use a CITYDC_LAB_DIR whose parent directories "
                               f"are searchable by others (the default is /tmp/citydc-lab), or `chmod o+x` them")
            os.chown(repos, entry.pw_uid, entry.pw_gid)
            # The SFTP user must traverse the lab directories down to its repositories.
            for p in (ctx.root, d):
                p.chmod(p.stat().st_mode | 0o011)
        # sshd refuses to start without its privilege-separation directory.
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        # -D: foreground, so the recorded PID is sshd's own; -e: log to stderr (our log file).
        return processes.spawn([SSHD, "-D", "-e", "-f", str(d / "sshd_config")], log_path=self.log_path(ctx))

    def ready(self, ctx: LabContext) -> bool:
        res = execute.run("ssh", ("ssh", "-F", str(self.ssh_config_path(ctx)), HOST_ALIAS, "-s", "sftp"),
                          input_text="", timeout=10)
        # An sftp subsystem that was started and then sees EOF on stdin exits 0.
        return res.rc == 0

    def endpoints(self, ctx: LabContext) -> dict[str, str]:
        user = SFTP_USER if os.geteuid() == 0 else getpass.getuser()
        return {"sftp": f"sftp:{user}@{ports.HOST}:{self.repo_root(ctx)}",
                "ssh_config": str(self.ssh_config_path(ctx))}
