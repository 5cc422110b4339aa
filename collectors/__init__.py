"""Collectors: the SNMP multi-target exporter and the NetFlow/IPFIX collector."""

# This folder is mapped to citydc.collectors by setuptools package-dir. When the repository root is on
# sys.path the folder would also import under its bare name and load twice (duplicate
# exception classes, DuplicateTimeseries on metrics), so refuse that.
if __name__ != "citydc.collectors":
    raise ImportError("import citydc.collectors, not the bare folder name (see README, Layout rule)")
