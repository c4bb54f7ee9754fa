"""Stage: subtopics -> opening questions (question-writer model), Sector I "world"."""

from __future__ import annotations

from prefect import task

from convoforge.ids import derive_seed, row_id, utcnow
from convoforge.llm import Gateway
from convoforge.parsing import list_schema, parse_list
from convoforge.prompts import load_prompt
from schemas.config import RunConfig
from tasks.runtime import fan_out, run_stage
from warehouse.store import Warehouse


def subtopics_in_scope(cfg: RunConfig, wh: Warehouse) -> list[dict]:
    """Subtopics of the configured meta-topics, in a stable order."""
    metas = cfg.topics.meta_topics[: cfg.topics.limit_meta_topics or None]
    return wh.query(
        "SELECT DISTINCT ON (id) * FROM topics WHERE level = 'subtopic' AND meta_topic IN "
        "(SELECT unnest(?)) ORDER BY id",
        [metas],
    ).to_pylist()


async def questions_for(sub: dict, cfg: RunConfig, gw: Gateway, run_id: str) -> list[dict]:
    prompt = load_prompt("questions")
    n = cfg.questions.per_subtopic
    system, user = prompt.render(n=n, subtopic=sub["name"], meta_topic=sub["meta_topic"])
    comp = await gw.complete(
        "question_writer",
        [{"role": "system", "content": system}, {"role": "user", "content": user}],
        seed=derive_seed(cfg.seed, sub["id"], "questions"),
        json_schema=list_schema(n),
    )
    now = utcnow()
    return [
        dict(
            id=row_id(sub["id"], "question", i, prompt.version),
            parent_id=sub["id"],
            run_id=run_id,
            created_at=now,
            sector="world",
            kind="question",
            meta_topic=sub["meta_topic"],
            subtopic=sub["name"],
            text=text,
            idx=i,
            model=comp.model,
            prompt_version=prompt.version,
            llm_call_id=comp.call_id,
        )
        for i, text in enumerate(parse_list(comp.text, limit=n, max_words=45))
    ]


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
