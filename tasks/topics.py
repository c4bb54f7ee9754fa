"""Stage: meta-topics -> subtopics (question-writer model)."""

from __future__ import annotations

from prefect import task

from convoforge.ids import row_id, utcnow
from convoforge.llm import Gateway
from schemas.config import RunConfig
from tasks.runtime import ask_for_list, fan_out, run_stage
from warehouse.store import Warehouse


def meta_topic_rows(cfg: RunConfig, run_id: str) -> list[dict]:
    names = cfg.topics.in_scope()
    now = utcnow()
    # Keyed by name, not position: reordering the config list keeps every id.
    return [
        dict(
            id=row_id(None, "meta_topic", name),
            parent_id=None,
            run_id=run_id,
            created_at=now,
            level="meta",
            meta_topic=name,
            name=name,
            idx=i,
            model=None,
            prompt_version=None,
            llm_call_id=None,
        )
        for i, name in enumerate(names)
    ]


async def expand_meta_topic(meta: dict, cfg: RunConfig, gw: Gateway, run_id: str) -> list[dict]:
    n = cfg.topics.subtopics_per_topic
    items = await ask_for_list(gw, cfg, "subtopics", meta, n, 10, meta_topic=meta["name"])
    return [
        {**base, "run_id": run_id, "level": "subtopic", "meta_topic": meta["name"], "name": name}
        for base, name in items
    ]


async def topics_stage(cfg: RunConfig, wh: Warehouse, gw: Gateway, run_id: str) -> dict:
    metas = meta_topic_rows(cfg, run_id)
    existing = wh.ids("topics")
    wh.write("topics", [m for m in metas if m["id"] not in existing], run_id)
    return await fan_out(
        "topics",
        "topics",
        metas,
        lambda m: expand_meta_topic(m, cfg, gw, run_id),
        cfg,
        wh,
        run_id,
        label=lambda m: m["name"],
    )


@task(name="topics")
def topics_task(cfg: RunConfig, run_id: str) -> dict:
    return run_stage(topics_stage, cfg, run_id)
