"""Run snmpsim's full responder with SNMPv3 users whose keys come from the environment.

Run by path with the snmpsim venv's Python. snmpsim takes USM keys only as options; adding
them here, inside the process, keeps them out of the command line other users can read in /proc.
Users: ``citydc`` (SHA-256 + AES-128) and ``citydc256`` (SHA-512 + AES-256), keys from
CITYDC_SNMP_V3_AUTH and CITYDC_SNMP_V3_PRIV.
"""

import os
import sys

from snmpsim.commands.responder import main

if __name__ == "__main__":
    auth, priv = os.environ["CITYDC_SNMP_V3_AUTH"], os.environ["CITYDC_SNMP_V3_PRIV"]
    sys.argv += [
                 "--v3-user=citydc", f"--v3-auth-key={auth}", "--v3-auth-proto=SHA256",
                 f"--v3-priv-key={priv}", "--v3-priv-proto=AES",
                 "--v3-user=citydc256", f"--v3-auth-key={auth}", "--v3-auth-proto=SHA512",
                 f"--v3-priv-key={priv}", "--v3-priv-proto=AES256"]
    sys.exit(main())
