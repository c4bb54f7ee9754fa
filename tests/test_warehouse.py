"""Atomic Parquet writes, schema checks, the journal, the writer lock, read-only analysts."""

import subprocess
import sys
import textwrap
import time

import duckdb
import pyarrow.parquet as pq
import pytest

from tests.conftest import topic_row as topic
from warehouse.store import Warehouse, WarehouseBusy, WarehouseError


def test_write_and_read_back_with_run_partition(tmp_path):
    wh = Warehouse(tmp_path)
    wh.write("topics", [topic(1), topic(2)], "r1")
    wh.write("topics", [topic(3, "r2")], "r2")
    rows = wh.query("SELECT id, run_id FROM topics ORDER BY id").to_pylist()
    assert rows == [
        {"id": "t1", "run_id": "r1"},
        {"id": "t2", "run_id": "r1"},
        {"id": "t3", "run_id": "r2"},
    ]
    assert len(list((tmp_path / "topics" / "run_id=r1").glob("part-*.parquet"))) == 1


def test_views_work_on_an_empty_warehouse(tmp_path):
    wh = Warehouse(tmp_path)
    for view in (
        "topics",
        "openers",
        "dialogues",
        "llm_calls",
        "dataset",
        "lineage",
        "stats",
        "cost_by_stage",
        "runs",
    ):
        assert wh.query(f"SELECT count(*) AS n FROM {view}").to_pylist() == [{"n": 0}]


def test_schema_violations_are_named(tmp_path):
    wh = Warehouse(tmp_path)
    with pytest.raises(WarehouseError, match="'topics'.*unknown columns \\['colour'\\]"):
        wh.write("topics", [{**topic(1), "colour": "red"}], "r1")
    with pytest.raises(WarehouseError, match="'topics'"):
        wh.write("topics", [{**topic(1), "idx": "not a number"}], "r1")
    with pytest.raises(WarehouseError, match="null id"):
        wh.write("topics", [{**topic(1), "id": None}], "r1")
    assert wh.query("SELECT count(*) AS n FROM topics").to_pylist() == [{"n": 0}]


def test_a_crash_mid_write_leaves_no_visible_file(tmp_path, monkeypatch):
    wh = Warehouse(tmp_path)
    wh.write("topics", [topic(1)], "r1")

    def die(table, fh, **kw):
        fh.write(b"PAR1 half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pq, "write_table", die)
    with pytest.raises(OSError, match="No space left"):
        wh.write("topics", [topic(2)], "r1")
    monkeypatch.undo()
    assert not list(tmp_path.rglob("*.tmp")), "temp file left behind"
    assert wh.query("SELECT id FROM topics").to_pylist() == [{"id": "t1"}]


def test_leftover_temp_files_are_cleared_by_the_next_writer(tmp_path):
    wh = Warehouse(tmp_path)
    wh.write("topics", [topic(1)], "r1")
    stale = tmp_path / "topics" / "run_id=r1" / ".part-9.parquet.abcd.tmp"
    stale.write_bytes(b"PAR1 partial")
    assert wh.query("SELECT count(*) AS n FROM topics").to_pylist() == [{"n": 1}]
    wh.acquire_writer()
    wh.release_writer()
    assert not stale.exists()


def test_journal_compaction_survives_a_torn_line_and_is_idempotent(tmp_path):
    wh = Warehouse(tmp_path)
    j = wh.journal_path("llm_calls", "r1")
    j.parent.mkdir(parents=True)
    row = (
        '{"id": "h%d", "run_id": "r1", "created_at": "2026-11-26T00:00:00+00:00", '
        '"status": "ok", "response": "x"}\n'
    )
    j.write_text(row % 1 + row % 2 + '{"id": "h3", "run_id": "r1", "crea')
    assert wh.compact_journals("llm_calls") == 2
    assert not j.exists()
    # A crash between writing the part and removing the journal: redoing it changes nothing.
    j.write_text(row % 1 + row % 2)
    wh.compact_journals("llm_calls")
    ids = wh.query("SELECT id FROM llm_calls ORDER BY id").column("id").to_pylist()
    assert ids == ["h1", "h2"]


def test_one_writer_at_a_time(tmp_path):
    code = textwrap.dedent(f"""
        import time
        from warehouse.store import Warehouse
        w = Warehouse({str(tmp_path)!r}); w.acquire_writer(); print("locked", flush=True)
        time.sleep(30)
    """)
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(WarehouseBusy, match=r"being written by pid \d+"):
            Warehouse(tmp_path).acquire_writer()
    finally:
        holder.kill()
        holder.wait()
    wh = Warehouse(tmp_path)
    wh.acquire_writer()  # the lock dies with its process
    wh.release_writer()


def test_analysts_read_the_catalog_while_a_writer_adds_rows(tmp_path):
    wh = Warehouse(tmp_path)
    catalog = wh.ensure_catalog()
    reader = textwrap.dedent(f"""
        import duckdb, time
        seen = []
        for _ in range(60):
            con = duckdb.connect({str(catalog)!r}, read_only=True)
            seen.append(con.sql("select count(*) from topics").fetchall()[0][0])
            con.close()
            if seen[-1] >= 10: break
            time.sleep(0.1)
        print(seen)
    """)
    proc = subprocess.Popen(
        [sys.executable, "-c", reader], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    wh.acquire_writer()
    for i in range(10):
        wh.write("topics", [topic(i)], "r1")
        time.sleep(0.15)
    wh.release_writer()
    out, errs = proc.communicate(timeout=60)
    assert proc.returncode == 0, errs
    seen = eval(out)
    assert seen[-1] == 10 and len(set(seen)) > 2, f"reader saw {seen}"
    assert seen == sorted(seen)
    with duckdb.connect(str(catalog), read_only=True) as con:  # a plain duckdb shell's view
        assert con.sql("select count(*) from topics").fetchall() == [(10,)]


def test_a_damaged_file_is_named_and_nothing_else_is_touched(tmp_path):
    wh = Warehouse(tmp_path)
    wh.write("topics", [topic(1)], "r1")
    bad = tmp_path / "topics" / "run_id=r1" / "part-9-bad.parquet"
    bad.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(WarehouseError, match=f"unreadable Parquet file {bad}.*_quarantine"):
        wh.query("SELECT count(*) FROM topics")
    (tmp_path / "_quarantine").mkdir()
    bad.rename(tmp_path / "_quarantine" / bad.name)
    assert wh.query("SELECT id FROM topics").to_pylist() == [{"id": "t1"}]
