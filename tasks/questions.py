"""Stage: subtopics -> opening questions (question-writer model), Sector I "world"."""

from __future__ import annotations

from prefect import task

from convoforge.llm import Gateway
from schemas.config import RunConfig
from tasks.runtime import ask_for_list, fan_out, run_stage
from warehouse.store import Warehouse


def subtopics_in_scope(cfg: RunConfig, wh: Warehouse) -> list[dict]:
    """Subtopics of the configured meta-topics, in a stable order."""
    metas = cfg.topics.in_scope()
    return wh.query(
        "SELECT DISTINCT ON (id) * FROM topics WHERE level = 'subtopic' AND meta_topic IN "
        "(SELECT unnest(?)) ORDER BY id",
        [metas],
    ).to_pylist()


async def questions_for(sub: dict, cfg: RunConfig, gw: Gateway, run_id: str) -> list[dict]:
    n = cfg.questions.per_subtopic
    items = await ask_for_list(
        gw, cfg, "questions", sub, n, 45, subtopic=sub["name"], meta_topic=sub["meta_topic"]
    )
    return [
        {**base, "run_id": run_id, "sector": "world", "kind": "question",
         "meta_topic": sub["meta_topic"], "subtopic": sub["name"], "text": text}
        for base, text in items
    ]  # fmt: skip


async def questions_stage(cfg: RunConfig, wh: Warehouse, gw: Gateway, run_id: str) -> dict:
    subs = subtopics_in_scope(cfg, wh)
    return await fan_out(
        "questions",
        "openers",
        subs,
        lambda s: questions_for(s, cfg, gw, run_id),
        cfg,
        wh,
        run_id,
        label=lambda s: s["name"],
    )


@task(name="questions")
def questions_task(cfg: RunConfig, run_id: str) -> dict:
    return run_stage(questions_stage, cfg, run_id)
