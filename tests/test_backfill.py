"""Backfills to a target: only the missing delta is generated, nothing is paid for twice."""

import pytest

from tests.conftest import fake_config
from warehouse.store import Warehouse


@pytest.fixture
def flows(prefect_server):
    from flows.backfill import BackfillTarget, backfill
    from flows.build import build_dataset

    return build_dataset, backfill, BackfillTarget


def _ledger(wh):
    return {
        r["id"]: r["n"]
        for r in wh.query(
            "SELECT id, count(*) AS n FROM llm_calls WHERE status = 'ok' GROUP BY id"
        ).to_pylist()
    }


def test_build_to_20_then_backfill_to_40(tmp_path, fake, flows):
    build, backfill, Target = flows
    cfg = fake_config(
        tmp_path, fake.url, topics={"subtopics_per_topic": 5}, dialogues={"target_dialogues": 20}
    )
    build(config=cfg)
    wh = Warehouse(cfg.warehouse.root)
    first = set(wh.query("SELECT id FROM dataset").column("id").to_pylist())
    assert len(first) == 20
    hashes_before = dict(fake.stats.by_hash)

    summary = backfill(target=Target(target_dialogues=40), config=cfg)
    assert summary["status"] == "completed", summary
    now = set(wh.query("SELECT id FROM dataset").column("id").to_pylist())
    assert first < now and len(now - first) == 20
    assert all(fake.stats.by_hash[h] == n for h, n in hashes_before.items()), "paid twice"
    assert all(n == 1 for n in _ledger(wh).values())
    metas = wh.query("SELECT DISTINCT meta_topic FROM lineage ORDER BY 1").column(0).to_pylist()
    assert metas == sorted(cfg.topics.meta_topics[:4])  # grew from 2 to 4 meta-topics
    orphans = wh.query(
        "SELECT count(*) AS n FROM lineage WHERE meta_topic_id IS NULL "
        "OR subtopic_id IS NULL OR opener_id IS NULL"
    ).to_pylist()
    assert orphans == [{"n": 0}]
    again = backfill(target=Target(target_dialogues=40), config=cfg)
    assert again["llm_calls"] == 0 and again["stages"]["dialogues"]["rows_written"] == 0


def test_backfill_adds_named_meta_topics(tmp_path, fake, flows):
    _, backfill, Target = flows
    cfg = fake_config(tmp_path, fake.url)
    summary = backfill(
        target=Target(target_dialogues=18, add_meta_topics=["Astronomy"]), config=cfg
    )
    wh = Warehouse(cfg.warehouse.root)
    rows = wh.query("SELECT meta_topic, count(*) AS n FROM lineage GROUP BY 1").to_pylist()
    counts = {r["meta_topic"]: r["n"] for r in rows}
    assert counts.get("Astronomy") == 6 and sum(counts.values()) == 18, (counts, summary)


def test_backfill_says_why_it_fell_short(tmp_path, fake, flows):
    _, backfill, Target = flows
    cfg = fake_config(
        tmp_path, fake.url, topics={"meta_topics": ["Tea", "Coffee"], "limit_meta_topics": 0}
    )
    summary = backfill(target=Target(target_dialogues=100), config=cfg)
    assert summary["status"].startswith("short of target by 88: every opener in scope")
    assert Warehouse(cfg.warehouse.root).query("SELECT count(*) AS n FROM dataset").to_pylist() == [
        {"n": 12}
    ]
