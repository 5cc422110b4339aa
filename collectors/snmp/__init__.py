"""SNMP polling of interface bandwidth (multi-target exporter)."""

# This folder is mapped to citydc.collectors.snmp by setuptools package-dir. When the repository root is on
# sys.path the folder would also import under its bare name and load twice (duplicate
# exception classes, DuplicateTimeseries on metrics), so refuse that.
if __name__ != "citydc.collectors.snmp":
    raise ImportError("import citydc.collectors.snmp, not the bare folder name (see README, Layout rule)")
