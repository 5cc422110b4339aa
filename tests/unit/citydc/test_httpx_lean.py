"""citydc.httpx_lean: httpx without its command-line tool and without trio, and nothing else changed.

Each check runs in a fresh interpreter: this test process may have imported httpx already.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

PROBE = textwrap.dedent("""
    import json, sys
    from citydc import httpx_lean
    httpx = httpx_lean.load()
    seen = {name: name in sys.modules for name in ("httpx._main", "trio", "pygments", "httpcore")}
    client = httpx.Client(transport=httpx.MockTransport(lambda req: httpx.Response(200, json={"path": req.url.path})))
    answer = client.get("http://x.test/admin/realms").json()
    import httpcore._synchronization as sync
    try:
        import trio
        trio_after = trio.__name__
    except ImportError:
        trio_after = None
    print(json.dumps({"seen": seen, "answer": answer, "httpcore_trio": sync.trio is not None,
                      "trio_after": trio_after, "same": httpx_lean.load() is httpx}))
""")


def probe() -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60)
    return json.loads(out.stdout)


def test_httpx_loads_without_its_cli_and_without_trio_and_still_works():
    got = probe()
    assert got["answer"] == {"path": "/admin/realms"}
    assert got["seen"]["httpcore"] is True  # loaded while trio was kept out
    assert got["seen"]["httpx._main"] is False and got["seen"]["trio"] is False
    assert got["httpcore_trio"] is False  # httpcore settled for "no trio" (citydc never runs it under trio)
    assert got["same"] is True


def test_trio_can_still_be_imported_afterwards_when_installed():
    import importlib.util

    got = probe()
    installed = importlib.util.find_spec("trio") is not None
    assert got["trio_after"] == ("trio" if installed else None)
