"""Private by default: the modes of what citydc writes.

Everything citydc creates that holds events, state, evidence, configs or flow output is readable
by its owner only (files 0600, directories 0700): the CLI sets the process umask to 077 before it
does anything (``set_umask``). A site whose auditors must read those files names their group in
``files.group``; citydc then uses umask 027 (0640/0750) — but only when it runs with that group
as its own (systemd ``Group=``), since new files take the process's group: with any other group it
stays at 077 and says why, so read access never goes to a group nobody chose.

The one exception is the node_exporter textfile metrics (``*.prom``), which hold only metrics and
must be read by node_exporter's user: ``public_textfile`` makes them 0644 in a 0755 directory.
"""

from __future__ import annotations

import contextlib
import grp
import os
import stat
from pathlib import Path

__all__ = ["GROUP_UMASK", "PRIVATE_UMASK", "apply_group", "exposed", "private_modes", "public_textfile", "set_umask"]

PRIVATE_UMASK = 0o077
GROUP_UMASK = 0o027


_group_reads = False  # set_umask(GROUP_UMASK) ran last: files.group is in effect in this process


def set_umask(mask: int = PRIVATE_UMASK) -> int:
    """Given a umask, set it for the process; return the previous one."""
    global _group_reads
    _group_reads = mask == GROUP_UMASK
    return os.umask(mask)


def private_modes() -> tuple[int, int]:
    """Return (file mode, directory mode) for what citydc creates with an explicit mode rather than
    through the umask alone: 0640/0750 while files.group is in effect (``apply_group``), else 0600/0700
    whatever the umask (a library caller's umask 022 must not expose the security log)."""
    return (0o640, 0o750) if _group_reads else (0o600, 0o700)


def apply_group(group: str | None) -> str | None:
    """Given ``files.group`` of the config (or None: the umask main() set stays), set the umask it
    allows; return a warning when the group is named but cannot be used (unknown, or not the
    process's group), else None."""
    if group is None:
        return None
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        set_umask(PRIVATE_UMASK)
        return f"files.group: no group {group!r} on this host; files stay readable by their owner only"
    if os.getegid() != gid:
        set_umask(PRIVATE_UMASK)
        return (f"files.group: citydc runs with group {os.getegid()}, not {group} ({gid}); run it with "
                f"Group={group} (systemd) for that group to read its files; they stay owner-only")
    set_umask(GROUP_UMASK)
    return None


def exposed(path: Path, *, group_read: bool = False) -> str | None:
    """Given a file or directory (and whether group read is allowed), return what gives others
    access (or the group write access, or read when not allowed), else None."""
    mode = stat.S_IMODE(path.stat().st_mode)
    bad = 0o007 | 0o020 | (0 if group_read else 0o050)
    if mode & bad:
        return f"{path}: mode {mode:04o} gives {'others' if mode & 0o007 else 'the group'} access"
    return None


def public_textfile(path: Path) -> None:
    """Given a node_exporter textfile just written, make it readable by node_exporter (0644, and
    its directory 0755 when citydc made it private): it holds metrics only."""
    path.chmod(0o644)
    with contextlib.suppress(OSError):
        directory = path.parent
        if stat.S_IMODE(directory.stat().st_mode) & 0o055 != 0o055 and directory.stat().st_uid == os.geteuid():
            directory.chmod(stat.S_IMODE(directory.stat().st_mode) | 0o755)
