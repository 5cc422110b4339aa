"""LDAP directory and SSO authentication-log audits."""

# This folder is mapped to citydc.sso by setuptools package-dir. When the repository root is on
# sys.path the folder would also import under its bare name and load twice (duplicate
# exception classes, DuplicateTimeseries on metrics), so refuse that.
if __name__ != "citydc.sso":
    raise ImportError("import citydc.sso, not the bare folder name (see README, Layout rule)")
