"""NetFlow v5/v9/IPFIX collection and bounded aggregation."""

# This folder is mapped to citydc.collectors.netflow by setuptools package-dir. When the repository root is on
# sys.path the folder would also import under its bare name and load twice (duplicate
# exception classes, DuplicateTimeseries on metrics), so refuse that.
if __name__ != "citydc.collectors.netflow":
    raise ImportError("import citydc.collectors.netflow, not the bare folder name (see README, Layout rule)")
