"""SIGKILL a real `convoforge run` midway, twice, then finish it: nothing half-written, nothing
doubled, and no request answered before a kill is ever paid for again."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

from tests.conftest import fake_roles_toml
from tests.doubles.fake_openai import FakeOpenAI, body_hash
from warehouse.store import Warehouse

CONFIG = """
name = "killtest"
seed = 11
[warehouse]
root = "{root}"
[topics]
limit_meta_topics = 2
subtopics_per_topic = 3
[questions]
per_subtopic = 2
[dialogues]
rounds_min = 2
rounds_max = 4
flush_every = 2
[llm]
concurrency = 3
backoff_base_s = 0.01
"""


def _start(cfg_path: Path, prefect_server: str) -> subprocess.Popen:
    env = {**os.environ, "PREFECT_API_URL": prefect_server}
    # Output to a file, not a pipe nobody reads: a full pipe would stall the run.
    with open(cfg_path.with_suffix(".log"), "a") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "convoforge.cli", "run", "--config", str(cfg_path)],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip


def _answered_in_warehouse(root: Path) -> set[str]:
    """Body hashes of every request the killed run had recorded: in Parquet or its journal."""
    requests = []
    for part in (root / "llm_calls").rglob("*.parquet"):
        t = pq.read_table(part, columns=["request", "status"]).to_pylist()
        requests += [r["request"] for r in t if r["status"] == "ok"]
    for journal in (root / "_journal").rglob("*.jsonl"):
        for line in journal.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # torn by the kill
            if row["status"] == "ok":
                requests.append(row["request"])
    return {body_hash(json.loads(r)) for r in requests}


def _all_parquet_readable(root: Path) -> None:
    for part in root.rglob("*.parquet"):
        pq.read_metadata(part)  # raises on a half-written file


def test_sigkill_midway_then_resume(tmp_path, prefect_server):
    root = tmp_path / "wh"
    with FakeOpenAI(latency_s=0.08) as fake:
        cfg_path = tmp_path / "run.toml"
        cfg_path.write_text(CONFIG.format(root=root) + fake_roles_toml(fake.url))
        paid_before_kill: set[str] = set()
        for kill_after in (20, 40):
            proc = _start(cfg_path, prefect_server)
            deadline = time.monotonic() + 120
            while fake.stats.answered < kill_after:
                assert proc.poll() is None, cfg_path.with_suffix(".log").read_text()
                assert time.monotonic() < deadline, "run made no progress"
                time.sleep(0.01)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            _all_parquet_readable(root)
            paid_before_kill |= _answered_in_warehouse(root)
        assert len(paid_before_kill) >= 35
        snapshot = dict(fake.stats.by_hash)

        proc = _start(cfg_path, prefect_server)
        assert proc.wait(300) == 0, cfg_path.with_suffix(".log").read_text()

    again = [h for h in paid_before_kill if fake.stats.by_hash[h] != snapshot[h]]
    assert again == [], f"{len(again)} requests answered before a kill were paid for again"
    # Only requests in flight at a kill (answered by the server, never received) were re-sent:
    # at most `concurrency` per kill.
    resent = [h for h, n in fake.stats.by_hash.items() if n > 1]
    assert len(resent) <= 2 * 3, f"{len(resent)} requests sent more than once"
    print(
        f"\nkill/resume: {len(paid_before_kill)} answers recorded before the kills, "
        f"{len(again)} paid again, {len(resent)} in-flight requests re-sent, "
        f"{fake.stats.answered} requests answered in all"
    )
    assert not list(root.rglob("*.tmp")) and not list((root / "_journal").rglob("*.jsonl"))

    wh = Warehouse(root)
    for table, where in (
        ("topics", ""),
        ("openers", ""),
        ("dialogues", "status='complete'"),
        ("llm_calls", "status='ok'"),
    ):
        sql = f"SELECT count(*) AS n, count(DISTINCT id) AS u FROM {table}"
        n = wh.query(sql + (f" WHERE {where}" if where else "")).to_pylist()[0]
        assert n["n"] == n["u"], f"duplicate rows in {table}: {n}"
    assert wh.query("SELECT count(*) AS n FROM dataset").to_pylist() == [{"n": 12}]
    rounds = wh.query("SELECT rounds_target, rounds FROM dataset").to_pylist()
    assert all(2 <= r["rounds"] == r["rounds_target"] <= 4 for r in rounds)
