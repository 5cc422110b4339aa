"""nfdump's nfcapd and pmacct's nfacctd as reference collectors (lab cross-checks, bench/):
argv builders, their configs and the parser of ``nfdump -I`` statistics.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["nfacctd_argv", "nfacctd_config", "nfcapd_argv", "nfdump_stats_argv", "parse_nfdump_stats"]


def nfcapd_argv(address: str, port: int, flow_dir: Path, buffer_bytes: int | None = None,
                binary: str = "nfcapd") -> tuple[str, ...]:
    """Return the argv of an nfcapd writing one file (rotation once an hour) into flow_dir."""
    return (binary, "-b", address, "-p", str(port), "-w", str(flow_dir), "-t", "3600",
            *(("-B", str(buffer_bytes)) if buffer_bytes else ()))


def nfdump_stats_argv(flow_dir: Path, binary: str = "nfdump") -> tuple[str, ...]:
    """Return the argv printing the summary statistics of every file in flow_dir."""
    return (binary, "-R", str(flow_dir), "-I")


def parse_nfdump_stats(text: str) -> dict[str, int]:
    """Given ``nfdump -I`` output, return {'flows', 'bytes', 'packets'}. Raise ValueError naming
    the missing key if the output lacks one."""
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("Flows", "Bytes", "Packets") and value.strip().isdigit():
            values[key.strip().lower()] = values.get(key.strip().lower(), 0) + int(value.strip())
    for key in ("flows", "bytes", "packets"):
        if key not in values:
            raise ValueError(f"nfdump -I output has no '{key.capitalize()}:' line: {text[:200]!r}")
    return values


def nfacctd_config(address: str, port: int, output: Path, buffer_bytes: int) -> str:
    """Return an nfacctd config with the print plugin summing bytes/packets/flows to a CSV file."""
    return "\n".join([
        "daemonize: false",
        f"nfacctd_ip: {address}",
        f"nfacctd_port: {port}",
        f"nfacctd_pipe_size: {buffer_bytes}",
        "plugins: print[out]",
        "aggregate[out]: proto",
        f"print_output_file[out]: {output}",
        "print_output[out]: csv",
        "print_output_file_append[out]: true",
        "print_refresh_time[out]: 3600",
        "plugin_pipe_size[out]: 10240000",
        "plugin_buffer_size[out]: 10240",
        "",
    ])


def nfacctd_argv(config: Path, binary: str = "nfacctd") -> tuple[str, ...]:
    return (binary, "-f", str(config))
