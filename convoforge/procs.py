"""Local helper services (llama.cpp server, Prefect server): start, wait until they answer,
and stop them with everything they started, whatever way the caller exits."""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


class ServiceError(RuntimeError):
    pass


def _die_with_parent() -> None:
    """In the child: the kernel sends SIGTERM when our parent dies, even by SIGKILL, so no
    helper outlives the process that started it (Linux; a no-op elsewhere)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _stop_group(proc: subprocess.Popen, timeout: float) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextmanager
def service(
    name: str, cmd: list[str], ready_url: str, timeout: float, env: dict | None = None
) -> Iterator[Path]:
    """Run cmd in its own process group (Ctrl-C reaches us, and we stop it in order); yield
    its log file once ready_url answers 200; stop it on exit, errors and signals."""
    slug = "-".join(name.split())
    log = tempfile.NamedTemporaryFile(prefix=f"convoforge-{slug}-", suffix=".log", delete=False)
    logfile = Path(log.name)
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
        start_new_session=True, preexec_fn=_die_with_parent,
    )  # fmt: skip
    stop = lambda: _stop_group(proc, 20)  # noqa: E731
    atexit.register(stop)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                tail = logfile.read_text(errors="replace")[-2000:]
                raise ServiceError(f"{name} exited with code {proc.returncode}:\n{tail}")
            try:
                if httpx.get(ready_url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise ServiceError(f"{name} did not answer within {timeout}s (log: {logfile})")
            time.sleep(0.3)
        yield logfile
    finally:
        stop()
        atexit.unregister(stop)
        log.close()
