"""Off-site backup with restic: jobs, copy, retention, checks and restore drills."""

# This folder is mapped to citydc.backup by setuptools package-dir. When the repository root is on
# sys.path the folder would also import under its bare name and load twice (duplicate
# exception classes, DuplicateTimeseries on metrics), so refuse that.
if __name__ != "citydc.backup":
    raise ImportError("import citydc.backup, not the bare folder name (see README, Layout rule)")
