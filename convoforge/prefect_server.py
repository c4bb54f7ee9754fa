"""A local Prefect server (SQLite, bundled UI) on 127.0.0.1 for `convoforge serve` and tests."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from convoforge.procs import service


@contextmanager
def local_prefect_server(port: int, timeout: float = 120.0) -> Iterator[str]:
    """Yield the API URL: PREFECT_API_URL when set (nothing started), else a server we start,
    wait for, and stop on exit. Telemetry stays off."""
    if os.environ.get("PREFECT_API_URL"):
        yield os.environ["PREFECT_API_URL"]
        return
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_UI_API_URL": api,  # the UI's browser code calls this, not its default :4200
    }
    cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
           "--port", str(port)]  # fmt: skip
    with service("prefect server", cmd, f"{api}/health", timeout, env=env):
        os.environ["PREFECT_API_URL"] = api
        try:
            yield api
        finally:
            if os.environ.get("PREFECT_API_URL") == api:
                del os.environ["PREFECT_API_URL"]
