"""The lab: real services on loopback for the demo and the tests."""

# This folder is mapped to citydc.lab by setuptools package-dir. When the repository root is on
# sys.path the folder would also import under its bare name and load twice (duplicate
# exception classes, DuplicateTimeseries on metrics), so refuse that.
if __name__ != "citydc.lab":
    raise ImportError("import citydc.lab, not the bare folder name (see README, Layout rule)")
