"""A local Prefect server (SQLite, bundled UI) on 127.0.0.1 for `convoforge serve` and tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


class PrefectServerError(RuntimeError):
    pass


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
    log = tempfile.NamedTemporaryFile(prefix="convoforge-prefect-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
         "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                tail = Path(log.name).read_text(errors="replace")[-2000:]
                raise PrefectServerError(f"prefect server exited ({proc.returncode}):\n{tail}")
            try:
                if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise PrefectServerError(
                    f"prefect server not healthy after {timeout}s ({log.name})"
                )
            time.sleep(0.5)
        os.environ["PREFECT_API_URL"] = api
        yield api
    finally:
        if os.environ.get("PREFECT_API_URL") == api:
            del os.environ["PREFECT_API_URL"]
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()
