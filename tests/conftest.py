"""Shared fixtures: a real Prefect server for the session, the fake OpenAI server, configs."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import socket
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_PREFECT_HOME = tempfile.mkdtemp(prefix="convoforge-prefect-")
os.environ.update(
    PREFECT_HOME=_PREFECT_HOME,
    PREFECT_SERVER_ANALYTICS_ENABLED="false",
    DO_NOT_TRACK="1",
    PREFECT_LOGGING_LEVEL="WARNING",
)
os.environ.pop("PREFECT_API_URL", None)  # tests start their own server, never a user's
for name in [k for k in os.environ if k.startswith("CONVOFORGE__")]:
    del os.environ[name]  # a developer's shell must not change what the tests see

from tests.doubles.fake_openai import FakeOpenAI  # noqa: E402


def interruptible() -> None:
    """preexec_fn for a child that a test stops with Ctrl-C (SIGINT). A test run started in
    the background (CI, `make test &`) inherits SIGINT as ignored, and Python then never
    installs its KeyboardInterrupt handler; restore the terminal default."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def prefect_server():
    """A real `prefect server start` on SQLite; flows in tests and subprocesses report to it."""
    from convoforge.prefect_server import local_prefect_server

    with local_prefect_server(_free_port()) as api:
        yield api
    shutil.rmtree(_PREFECT_HOME, ignore_errors=True)


@pytest.fixture
def fake():
    with FakeOpenAI() as srv:
        yield srv


def topic_row(i: int, run_id: str = "r1") -> dict:
    """A meta-topic row named `topic <i>` with id `t<i>`, for warehouse tests."""
    return dict(id=f"t{i}", parent_id=None, run_id=run_id,
                created_at=dt.datetime(2026, 11, 26, tzinfo=dt.UTC), level="meta",
                meta_topic="M", name=f"topic {i}", idx=i, model=None, prompt_version=None,
                llm_call_id=None)  # fmt: skip


def fake_roles_toml(url: str) -> str:
    """TOML sections pointing every role at the fake server (append to a test's config)."""
    return "".join(
        f'\n[llm.{role}]\nbase_url = "{url}"\nmodel = "fake-model"\n'
        for role in ("question_writer", "user_simulator", "assistant", "judge")
    )


def fake_config(tmp_path: Path, url: str, **overrides):
    """A small RunConfig whose every role talks to the fake server, with fast retries."""
    from convoforge.config import merge
    from schemas.config import RunConfig

    role = {
        "base_url": url,
        "model": "fake-model",
        "api_key_env": "CONVOFORGE_TEST_KEY",
        "usd_per_1m_input": 0.15,
        "usd_per_1m_output": 0.6,
    }
    data = {
        "warehouse": {"root": str(tmp_path / "wh")},
        "topics": {"limit_meta_topics": 2, "subtopics_per_topic": 3},
        "questions": {"per_subtopic": 2},
        "dialogues": {"rounds_min": 3, "rounds_max": 3, "flush_every": 3},
        "llm": {
            "concurrency": 4,
            "backoff_base_s": 0.01,
            "backoff_max_s": 0.2,
            "timeout_s": 5,
            **{r: dict(role) for r in ("question_writer", "user_simulator", "assistant", "judge")},
        },
    }
    return RunConfig.model_validate(merge(data, overrides))
