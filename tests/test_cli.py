"""The command line as a user meets it: clear errors, SQL over the catalog, a resolved config."""

import json
import subprocess
import sys

from tests.conftest import ROOT, topic_row
from warehouse.store import Warehouse


def cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "convoforge.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def test_invalid_config_names_field_and_value_before_any_work(tmp_path):
    r = cli("run", "--warehouse", str(tmp_path / "wh"), "--set", "llm.concurrency=0")
    assert r.returncode == 2
    assert "llm.concurrency = 0" in r.stderr and "greater than or equal to 1" in r.stderr
    assert not (tmp_path / "wh").exists(), "work started despite a bad config"


def test_config_command_prints_the_resolved_config(tmp_path):
    r = cli("config", "--config", "examples/tiny.toml", "--set", "seed=99")
    assert r.returncode == 0, r.stderr
    cfg = json.loads(r.stdout)
    assert cfg["seed"] == 99 and cfg["topics"]["limit_meta_topics"] == 2


def test_sql_reads_the_catalog(tmp_path):
    wh = Warehouse(tmp_path)
    wh.write("topics", [topic_row(i, "r") for i in range(3)], "r")
    r = cli(
        "sql", "-w", str(tmp_path), "-f", "json", "select level, count(*) n from topics group by 1"
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == [{"level": "meta", "n": 3}]
    r = cli("sql", "-w", str(tmp_path), "-f", "csv", "select name from topics order by 1")
    assert r.stdout.splitlines() == ["name", "topic 0", "topic 1", "topic 2"]
    bad = cli("sql", "-w", str(tmp_path), "select nope from topics")
    assert bad.returncode == 1 and "nope" in bad.stderr
    missing = cli("sql", "-w", str(tmp_path / "absent"), "select 1")
    assert missing.returncode == 2 and "no warehouse" in missing.stderr


def test_run_on_a_damaged_warehouse_names_the_file(tmp_path, prefect_server):
    wh = Warehouse(tmp_path)
    wh.write("topics", [topic_row(1)], "r1")
    bad = tmp_path / "topics" / "run_id=r1" / "part-9-bad.parquet"
    bad.write_bytes(b"PAR1 not parquet")
    url = '"http://127.0.0.1:9/v1"'  # never reached: the damage is found first
    r = cli(
        "run",
        "-w",
        str(tmp_path),
        *[
            f"--set=llm.{role}.base_url={url}"
            for role in ("question_writer", "user_simulator", "assistant")
        ],
    )
    assert r.returncode == 1
    assert f"unreadable Parquet file {bad}" in " ".join(r.stderr.split())
    bad.unlink()
    assert wh.query("SELECT id FROM topics").to_pylist() == [{"id": "t1"}]


def test_a_revoked_key_ends_the_run_with_a_clear_message(tmp_path, fake, prefect_server):
    from tests.doubles.fake_openai import Faults

    fake.faults = Faults(always=lambda body: "401")
    url = f'"{fake.url}"'
    r = cli(
        "run",
        "-w",
        str(tmp_path / "wh"),
        *[
            f"--set=llm.{role}.base_url={url}"
            for role in ("question_writer", "user_simulator", "assistant")
        ],
    )
    assert r.returncode == 1, r.stderr[-2000:]
    assert "refused the run: http 401 invalid_api_key" in " ".join(r.stderr.split())
