"""The build flow on a real Prefect server against the fake OpenAI server."""

import os
from pathlib import Path

import pytest

from tests.conftest import fake_config
from tests.doubles.fake_openai import Faults
from warehouse.store import Warehouse


@pytest.fixture
def build(prefect_server):
    from flows.build import build_dataset

    return build_dataset


def _counts(wh: Warehouse) -> dict:
    return wh.query(
        "SELECT (SELECT count(*) FROM topics) t, (SELECT count(*) FROM openers) o, "
        "(SELECT count(*) FROM dialogues) d, (SELECT count(*) FROM llm_calls) c"
    ).to_pylist()[0]


def test_build_then_rebuild_finds_its_work_done(tmp_path, fake, build, monkeypatch, caplog):
    secret = "sk-proj-PLANTED-4c1d2e3f"
    monkeypatch.setenv("CONVOFORGE_TEST_KEY", secret)
    cfg = fake_config(tmp_path, fake.url)
    summary = build(config=cfg)
    assert summary["status"] == "completed"
    wh = Warehouse(cfg.warehouse.root)
    # 2 meta-topics -> 3 subtopics each -> 2 questions each -> 12 dialogues of 3 rounds.
    assert _counts(wh) == {"t": 2 + 6, "o": 12, "d": 12, "c": 2 + 6 + 12 * 5}
    rounds = wh.query("SELECT rounds, len(turns) AS n FROM dataset").to_pylist()
    assert rounds == [{"rounds": 3, "n": 6}] * 12
    turns = wh.query("SELECT turns FROM dataset LIMIT 1").to_pylist()[0]["turns"]
    assert [t["role"] for t in turns] == ["user", "assistant"] * 3
    lineage = wh.query("SELECT * FROM lineage").to_pylist()
    assert len(lineage) == 12 and all(
        r["meta_topic"] in ("Technology", "Health and wellness") and r["subtopic"] and r["opener"]
        for r in lineage
    )
    assert summary["llm_calls"] == 68 and summary["cache_hits"] == 0

    answered = fake.stats.answered
    again = build(config=cfg)
    assert fake.stats.answered == answered, "a re-run asked the endpoint again"
    assert _counts(wh) == {"t": 8, "o": 12, "d": 12, "c": 68}
    assert again["llm_calls"] == 0
    runs = wh.query("SELECT status FROM runs").to_pylist()
    assert runs == [{"status": "completed"}] * 2

    # The key was used (the fake saw requests) but is stored nowhere: not in the warehouse,
    # not in the Prefect server's database (flow parameters, logs), not in our logs.
    prefect_db = list(Path(os.environ["PREFECT_HOME"]).glob("prefect.db*"))  # with its WAL
    assert prefect_db
    for f in [*Path(cfg.warehouse.root).rglob("*"), *prefect_db]:
        if f.is_file():
            assert secret.encode() not in f.read_bytes(), f"key leaked into {f}"
    assert secret not in caplog.text


def test_thirty_percent_faults_every_opener_accounted_for(tmp_path, fake, build):
    def always(body):  # the first question of every subtopic can never be answered
        first_user = next(m["content"] for m in body["messages"] if m["role"] == "user")
        return (
            "500"
            if body["messages"][0]["content"].startswith("You are a helpful")
            and first_user.endswith(" 0 matter?")
            else None
        )

    fake.faults = Faults(
        rate=0.3,
        kinds=("429", "500", "timeout"),
        retry_after_s=0.05,
        hang_s=1.5,
        seed=3,
        always=always,
    )
    cfg = fake_config(tmp_path, fake.url, llm={"timeout_s": 1.0, "max_attempts": 8})
    summary = build(config=cfg)
    wh = Warehouse(cfg.warehouse.root)
    poisoned = 6 * 8  # six openers, eight attempts each
    random_faults = sum(fake.stats.faults.values()) - poisoned
    assert random_faults >= 0.2 * (fake.stats.requests - poisoned), fake.stats.faults
    openers = set(wh.query("SELECT id FROM openers").column("id").to_pylist())
    assert len(openers) == 12, summary
    rows = wh.query("SELECT parent_id, status, failure_reason FROM dialogues").to_pylist()
    assert {r["parent_id"] for r in rows} == openers, "an opener vanished without a trace"
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(failed) == 6 and all(
        "http 500 after 8 attempts" in r["failure_reason"] for r in failed
    )
    assert all(r["failure_reason"] is None for r in rows if r["status"] == "complete")
    assert summary["failures"] == {"http 500 after 8 attempts": len(failed)}
    print(
        f"\n30% faults: {fake.stats.requests} requests, faults {dict(fake.stats.faults)}, "
        f"{len(rows) - len(failed)} dialogues complete, {len(failed)} recorded as failed"
    )
    errors = wh.query("SELECT count(*) AS n FROM llm_calls WHERE status = 'error'").to_pylist()
    assert errors == [{"n": len(failed)}]


def test_budget_stops_cleanly_and_resumes_to_the_same_dataset(tmp_path, fake, build):
    """Runs stopped by a per-run token budget, resumed until done, end with exactly the dataset
    of one uninterrupted run, and pay for no request twice."""
    cfg = fake_config(tmp_path / "a", fake.url, llm={"budget_tokens": 1500, "concurrency": 2})
    statuses = []
    for _ in range(10):
        statuses.append(build(config=cfg)["status"])
        if statuses[-1] == "completed":
            break
    assert statuses[0].startswith("stopped: budget (token budget 1500 reached")
    assert statuses[-1] == "completed" and len(statuses) > 2, statuses
    assert all(n == 1 for n in fake.stats.by_hash.values()), "a request was paid for twice"
    stopped = Warehouse(cfg.warehouse.root)
    runs = stopped.query("SELECT status FROM runs").column("status").to_pylist()
    assert sum(s.startswith("stopped: budget") for s in runs) == len(statuses) - 1

    whole = fake_config(tmp_path / "b", fake.url)
    build(config=whole)
    q = "SELECT id, parent_id, rounds, turns FROM dataset ORDER BY id"
    assert stopped.query(q).to_pylist() == Warehouse(whole.warehouse.root).query(q).to_pylist()
    assert len(stopped.query(q)) == 12


def test_analyst_reads_catalog_while_a_build_writes(tmp_path, build):
    import subprocess
    import sys
    import textwrap
    import threading

    from tests.doubles.fake_openai import FakeOpenAI

    with FakeOpenAI(latency_s=0.05) as slow:
        cfg = fake_config(tmp_path, slow.url, llm={"concurrency": 2}, dialogues={"flush_every": 1})
        catalog = Path(cfg.warehouse.root) / "catalog.duckdb"
        reader = textwrap.dedent(f"""
            import duckdb, os, time
            while not os.path.exists({str(catalog)!r}):
                time.sleep(0.05)
            seen, deadline = [], time.time() + 90
            while time.time() < deadline:
                try:
                    con = duckdb.connect({str(catalog)!r}, read_only=True)
                except duckdb.IOException:  # the writer is creating the catalog: a moment
                    time.sleep(0.05)
                    continue
                seen.append(con.sql("select count(*) from dataset").fetchall()[0][0])
                con.close()
                if seen[-1] == 12:
                    break
                time.sleep(0.1)
            print(seen)
        """)
        proc = subprocess.Popen(
            [sys.executable, "-c", reader],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        t = threading.Thread(target=lambda: build(config=cfg))
        t.start()
        out, err = proc.communicate(timeout=120)
        t.join()
    assert proc.returncode == 0, err
    seen = eval(out)
    assert seen[-1] == 12 and seen == sorted(seen)
    assert len(set(seen)) >= 4, f"the reader saw too few intermediate states: {seen}"


def test_target_counts_complete_dialogues_and_grows_without_repeats(tmp_path, fake, build):
    def always(body):  # every dialogue of a question numbered 0 fails for good
        first_user = next(m["content"] for m in body["messages"] if m["role"] == "user")
        return "500" if first_user.endswith(" 0 matter?") else None

    fake.faults = Faults(always=always)
    cfg = fake_config(
        tmp_path, fake.url, dialogues={"target_dialogues": 5}, llm={"max_attempts": 2}
    )
    first = build(config=cfg)
    wh = Warehouse(cfg.warehouse.root)
    assert wh.query("SELECT count(*) AS n FROM dataset").to_pylist() == [{"n": 5}]
    assert first["stages"]["dialogues"]["rows_written"] > 5  # failures were replaced
    before = dict(fake.stats.by_hash)
    cfg.dialogues.target_dialogues = 6  # all six answerable openers
    second = build(config=cfg)
    assert wh.query("SELECT count(*) AS n FROM dataset").to_pylist() == [{"n": 6}]
    assert all(fake.stats.by_hash[h] == n for h, n in before.items()), "paid twice"
    assert second["stages"]["dialogues"]["rows_written"] >= 1
    lineage = wh.query("SELECT count(*) AS n FROM lineage WHERE meta_topic IS NOT NULL")
    assert lineage.to_pylist() == [{"n": 6}]


def test_a_fatal_error_keeps_the_finished_dialogues(tmp_path, fake, build):
    """A key revoked mid-run (401) stops the run; dialogues finished before it are stored."""
    answered = {"n": 0}

    def revoke_after_a_while(body):
        if body["messages"][0]["content"].startswith("You are a helpful"):
            answered["n"] += 1
            if answered["n"] > 12:  # the first few dialogues finish, then the key dies
                return "401"
        return None

    fake.faults = Faults(always=revoke_after_a_while)
    cfg = fake_config(tmp_path, fake.url, llm={"concurrency": 1},
                      dialogues={"flush_every": 100})  # fmt: skip
    with pytest.raises(Exception, match="invalid_api_key"):
        build(config=cfg)
    wh = Warehouse(cfg.warehouse.root)
    done = wh.query("SELECT count(*) AS n FROM dataset").to_pylist()[0]["n"]
    assert done == 4, "dialogues finished before the 401 were lost"
