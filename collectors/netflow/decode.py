"""Bulk decoding: compile a (v9/IPFIX) template once into a numpy structured dtype, then turn
the concatenated records of many datagrams into canonical columns with a few array operations.

Templates with variable-length fields (IPFIX length 65535) are first rewritten record by record
into a fixed "normalized" layout that leaves the variable fields out; that slow path only runs
for such templates.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from citydc.collectors.netflow.records import COLUMNS, FlowBatch, Malformed

__all__ = ["FIELD_COLUMNS", "MAX_FLOW_COUNTER", "SAMPLING_FIELDS", "Template", "announced_rate", "batch_from_records",
           "compile_template", "implausible", "implausible_at", "may_be_implausible", "normalize", "uint_column"]

VARIABLE = 65535
# Largest sane template: a UDP payload cannot carry a record longer than this, and no real
# exporter announces hundreds of fields. Anything beyond is garbage or an attack.
MAX_FIELDS = 256
MAX_RECORD_LEN = 65000
# Largest bytes or packets one flow record may add, once scaled by its sampling rate. 2**48 bytes
# is over an hour and a half of a saturated 400 Gbit/s link in a single record (active timeouts
# are minutes), and no link carries 2**48 packets in a day. A record above it is a broken or
# hostile exporter (a counter of 2**64 - 1, a sampling interval of 4e9): adding it would make the
# counter meaningless, and it would swamp the float64 every exported sample is (one 2**64 record
# hides every later increment below 4096).
MAX_FLOW_COUNTER = 1 << 48

# IANA IPFIX element id (same numbers as NetFlow v9 for these) -> column it feeds.
FIELD_COLUMNS = {
    1: "bytes", 2: "packets", 85: "bytes_total", 86: "packets_total",
    4: "proto", 7: "sport", 11: "dport", 32: "icmp",  # 139 (ICMPv6) is not copied, as nfdump does not
    8: "src4", 12: "dst4", 27: "src6", 28: "dst6",
    10: "in_if", 14: "out_if",
    34: "sampling", 50: "sampling", 305: "sampling", 306: "sampling_space",
}
# samplingInterval, samplerRandomInterval: "1 in N packets"; samplingPacketInterval alone is read the same way.
SAMPLING_FIELDS = (34, 50, 305)
# PSAMP systematic count-based sampling (RFC 5477 §8.2.1): samplingPacketInterval (305) packets are selected,
# then samplingPacketSpace (306) are skipped, so the rate is 1 in (305 + 306) / 305. softflowd -s 10 sends 1 and 9.
PSAMP_INTERVAL = 305
_INT_COLUMNS = {"bytes", "packets", "bytes_total", "packets_total", "proto", "sport", "dport", "icmp",
                "in_if", "out_if", "sampling", "sampling_space"}


@dataclass(frozen=True, eq=False)
class Template:
    """A compiled template: the wire layout and the numpy dtype that reads its records in bulk.

    ``fields`` are (enterprise, element id, length); ``record_len`` is None when a field has
    variable length. ``dtype`` reads the normalized record (variable fields removed).
    """

    template_id: int
    fields: tuple[tuple[int, int, int], ...]
    scope_count: int
    record_len: int | None
    dtype: np.dtype
    columns: frozenset[str]

    @property
    def is_options(self) -> bool:
        return self.scope_count > 0

    @property
    def norm_len(self) -> int:
        return self.dtype.itemsize


def compile_template(template_id: int, fields: list[tuple[int, int, int]], scope_count: int = 0) -> Template:
    """Given a template id and its (enterprise, id, length) fields, return the compiled Template.

    Raise Malformed('bad_template') if the field count or the record length is absurd (zero
    fields, more than MAX_FIELDS, a record of zero length or longer than MAX_RECORD_LEN), or if a
    field this decoder reads has a length its type cannot have (an address not of 4 or 16 bytes,
    an integer of 0 or more than 8 bytes): its value would otherwise be silently lost.
    """
    if not fields or len(fields) > MAX_FIELDS:
        raise Malformed("bad_template", f"template {template_id}: {len(fields)} fields")
    names: list[str] = []
    formats: list = []
    offsets: list[int] = []
    offset = 0
    variable = False
    for enterprise, element, length in fields:
        if length == VARIABLE:
            variable = True
            continue
        column = FIELD_COLUMNS.get(element) if enterprise == 0 else None
        spec = _field_format(column, length) if column is not None else None
        if column is not None and spec is None:
            # RFC 7011 §6.2: only integers may be shorter than their type, none longer.
            raise Malformed("bad_template", f"template {template_id}: element {element} of length {length}")
        if spec is not None and column not in names and column + "_hi" not in names:
            for suffix, fmt, extra in spec:
                names.append(column + suffix)
                formats.append(fmt)
                offsets.append(offset + extra)
        offset += length
    if offset == 0 and not variable:
        raise Malformed("bad_template", f"template {template_id}: record length 0")
    if offset > MAX_RECORD_LEN:
        raise Malformed("bad_template", f"template {template_id}: record length {offset}")
    # A normalized record of only variable fields still needs one byte so counting works.
    dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": max(offset, 1)})
    columns = frozenset(n[:-3] if n.endswith(("_hi", "_lo")) else n for n in names)
    return Template(template_id, tuple(fields), scope_count, None if variable else offset, dtype, columns)


def _field_format(column: str, length: int) -> list[tuple[str, object, int]] | None:
    # Return (name suffix, numpy format, offset within the field) for a field we read, or None to skip it.
    if column in ("src4", "dst4"):
        return [("", ">u4", 0)] if length == 4 else None
    if column in ("src6", "dst6"):
        return [("_hi", ">u8", 0), ("_lo", ">u8", 8)] if length == 16 else None
    if column in _INT_COLUMNS:
        if length in (1, 2, 4, 8):
            return [("", f">u{length}", 0)]
        if 0 < length < 8:  # reduced-size encoding (RFC 7011 §6.2): big-endian, fewer bytes
            return [("", (np.uint8, (length,)), 0)]
    return None


def _counter_fields(template: Template) -> list[str]:
    # The dtype fields the bytes and packets columns are read from (as batch_from_records and
    # fastpath.layout choose them: the delta counter, else the total one).
    have = template.columns
    out = []
    for name in ("bytes", "packets"):
        if name in have:
            out.append(name)
        elif name + "_total" in have:
            out.append(name + "_total")
    return out


def _largest(dtype: np.dtype) -> int:
    return (1 << (8 * dtype.itemsize)) - 1  # a reduced-size (uint8, (n,)) field has itemsize n


def may_be_implausible(template: Template, rate: int) -> bool:
    """Given a template and the sampling rate its records are scaled by, return whether any of its
    records could exceed MAX_FLOW_COUNTER. False for the usual 4-byte counters at a rate up to
    65536 (v5, softflowd): those records are not checked at all."""
    fields = template.dtype.fields or {}
    largest_rate = max(rate, 1)
    if "sampling" in template.columns:
        largest_rate = max(largest_rate, _largest(fields["sampling"][0]))
    return any(_largest(fields[name][0]) * largest_rate > MAX_FLOW_COUNTER for name in _counter_fields(template))


def _too_large(counters: list[np.ndarray], sampling: np.ndarray | None, rate: int) -> np.ndarray:
    # Compared before scaling (value > bound // rate), so a product past 2**64 cannot wrap around.
    rate = min(max(rate, 1), 2**64 - 1)
    if sampling is None:
        limit: np.ndarray | np.uint64 = np.uint64(MAX_FLOW_COUNTER // rate)
    else:
        rates = sampling.astype(np.uint64)
        rates[rates == 0] = rate
        limit = np.uint64(MAX_FLOW_COUNTER) // rates
    bad = np.zeros(len(counters[0]) if counters else 0, bool)
    for values in counters:
        bad |= values.astype(np.uint64) > limit
    return bad


def implausible(template: Template, arr: np.ndarray, rate: int) -> np.ndarray:
    """Given records of the template's dtype and their sampling rate, return a boolean mask of the
    records whose scaled bytes or packets exceed MAX_FLOW_COUNTER (scaled as batch_from_records does)."""
    n = len(arr)
    sampling = uint_column(arr, "sampling", n) if "sampling" in template.columns else None
    return _too_large([uint_column(arr, name, n) for name in _counter_fields(template)], sampling, rate)


def implausible_at(template: Template, rate: int, buf: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """As implausible, for the records at byte ``offsets`` of ``buf``: reads only the counter and
    sampling fields (a few bytes per record), not whole records."""
    fields = template.dtype.fields or {}
    sampling = _column_at(buf, offsets, *fields["sampling"][:2]) if "sampling" in template.columns else None
    return _too_large([_column_at(buf, offsets, *fields[name][:2]) for name in _counter_fields(template)],
                      sampling, rate)


def _column_at(buf: np.ndarray, offsets: np.ndarray, dtype: np.dtype, field_offset: int) -> np.ndarray:
    # The field (big-endian, maybe reduced-size) of every record at ``offsets``, as uint64.
    width = dtype.itemsize
    items = np.ndarray((len(buf) - field_offset - width + 1,), np.dtype((np.void, width)), buffer=buf,
                       offset=field_offset, strides=(1,))
    raw = items[offsets]
    if dtype.subdtype is None:
        return raw.view(dtype).astype(np.uint64)
    return uint_column(raw.view([("v", dtype)]), "v", len(raw))


def normalize(template: Template, data: bytes | memoryview, start: int, end: int) -> tuple[bytes, int]:
    """Given a template with variable-length fields and the data set body data[start:end],
    return (normalized records concatenated, record count).

    Raise Malformed('bad_record') if a length prefix runs past the set. Trailing bytes shorter
    than the smallest possible record are padding.
    """
    out = bytearray()
    count = 0
    pos = start
    # Every record consumes at least min_len >= 1 bytes (a variable field has a 1-byte length
    # prefix), so the loop ends; what is left shorter than that is padding.
    min_len = max(1, sum(1 if length == VARIABLE else length for _, _, length in template.fields))
    only_variable = sum(length for _, _, length in template.fields if length != VARIABLE) == 0
    while end - pos >= min_len:
        for _, _, length in template.fields:
            if length != VARIABLE:
                if pos + length > end:
                    raise Malformed("bad_record", f"template {template.template_id}: field past set end")
                out += data[pos:pos + length]
                pos += length
                continue
            if pos >= end:
                raise Malformed("bad_record", f"template {template.template_id}: length prefix past set end")
            vlen = data[pos]
            pos += 1
            if vlen == 255:
                if pos + 2 > end:
                    raise Malformed("bad_record", f"template {template.template_id}: long length past set end")
                (vlen,) = struct.unpack_from("!H", data, pos)
                pos += 2
            if pos + vlen > end:
                raise Malformed("bad_record", f"template {template.template_id}: value past set end")
            pos += vlen
        if only_variable:
            out += b"\0"  # the normalized record of a template without fixed fields is one byte
        count += 1
    return bytes(out), count


def announced_rate(template: Template, arr: np.ndarray) -> int | None:
    """Given options data records of a template with a sampling column, return the 1-in-N rate the
    last record announces, or None when it announces none (an interval of 0).

    samplingInterval and samplerRandomInterval are N itself; samplingPacketInterval with
    samplingPacketSpace (PSAMP count-based) select 305 of every 305 + 306 packets: N is their
    ratio, rounded (1 and 9 are 1 in 10). samplingPacketInterval without a space is read as N."""
    n = len(arr)
    if n == 0:
        return None
    rate = int(uint_column(arr, "sampling", n)[-1])
    if rate and "sampling_space" in template.columns and _sampling_element(template) == PSAMP_INTERVAL:
        rate = max(1, round((rate + int(uint_column(arr, "sampling_space", n)[-1])) / rate))
    return rate or None


def _sampling_element(template: Template) -> int | None:
    # The element the sampling column is read from: the first sampling field (compile_template keeps the first).
    return next((element for enterprise, element, _ in template.fields
                 if enterprise == 0 and element in SAMPLING_FIELDS), None)


def uint_column(arr: np.ndarray, name: str, n: int) -> np.ndarray:
    """Given records, a field name and their count, return the field as unsigned integers."""
    col = arr[name]
    if col.ndim == 2:  # reduced-size big-endian integer: fold the bytes
        acc = np.zeros(n, np.uint64)
        for i in range(col.shape[1]):
            acc = (acc << np.uint64(8)) | col[:, i].astype(np.uint64)
        return acc
    return col


def batch_from_records(template: Template, data: bytes | np.ndarray, site: str, exporter: str, version: int,
                       sampling_rate: int) -> FlowBatch:
    """Given (normalized) records of one template, as bytes or as an array of the template's
    dtype, return their FlowBatch.

    Bytes and packets are multiplied by the record's own sampling field when it has one, else
    by ``sampling_rate`` (from options data or the exporter's config).
    """
    arr = np.frombuffer(data, dtype=template.dtype) if isinstance(data, bytes) else data
    n = len(arr)
    cols: dict[str, np.ndarray] = {}
    have = template.columns
    for name in ("bytes", "packets"):
        src = name if name in have else (name + "_total" if name + "_total" in have else None)
        cols[name] = uint_column(arr, src, n).astype(np.uint64) if src else np.zeros(n, np.uint64)
    if "sampling" in have:
        rate = uint_column(arr, "sampling", n).astype(np.uint64)
        rate[rate == 0] = max(sampling_rate, 1)
        cols["bytes"] *= rate
        cols["packets"] *= rate
    elif sampling_rate > 1:
        cols["bytes"] *= np.uint64(sampling_rate)
        cols["packets"] *= np.uint64(sampling_rate)
    is6 = "src6" in have or "dst6" in have
    cols["ip_version"] = np.full(n, 6 if is6 else 4, np.uint8)
    for name in ("src4", "dst4", "proto", "sport", "dport", "in_if", "out_if"):
        dtype = COLUMNS[name]
        cols[name] = uint_column(arr, name, n).astype(dtype) if name in have else np.zeros(n, dtype)
    if "icmp" in have and "dport" not in have:
        # As nfdump does: ICMP type/code travels in the destination port column.
        cols["dport"] = uint_column(arr, "icmp", n).astype(np.uint16)
    for side in ("src6", "dst6"):
        for half in ("_hi", "_lo"):
            cols[side + half] = (arr[side + half].astype(np.uint64) if side in have
                                 else np.zeros(n, np.uint64))
    return FlowBatch(site, exporter, version, cols)
