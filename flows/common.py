"""What every writing flow shares: the writer lock, the catalog, the embedded model, and the run
summary (a Prefect artifact and a row in the `runs` table)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

from convoforge.embedded import embedded_server, with_endpoint
from convoforge.ids import row_id, utcnow
from schemas.config import RunConfig
from tasks.dialogues import dialogues_task, openers_to_do
from tasks.questions import questions_task
from tasks.topics import topics_task
from warehouse.store import Warehouse, WarehouseError

log = logging.getLogger(__name__)

ROLES_USED = ("question_writer", "user_simulator", "assistant")
SUMMED = ("llm_calls", "cache_hits", "prompt_tokens", "completion_tokens", "cost_usd")
STAGE_TASKS = (topics_task, questions_task, dialogues_task)


@contextmanager
def writing_run(config: RunConfig) -> Iterator[tuple[RunConfig, Warehouse]]:
    """Hold the warehouse's writer lock, refresh the catalog, and start the embedded model for
    roles without an endpoint; yield the config with every endpoint resolved."""
    wh = Warehouse(config.warehouse.root, config.warehouse.catalog or None)
    wh.acquire_writer()
    try:
        try:
            wh.ensure_catalog()
        except WarehouseError as e:  # analysts keep reading the existing views
            log.warning("%s", e)
        with ExitStack() as stack:
            cfg = config
            if any(not cfg.role(r).base_url for r in ROLES_USED):
                base_url = stack.enter_context(embedded_server(cfg.embedded))
                cfg = with_endpoint(cfg, base_url, ROLES_USED)
            yield cfg, wh
    finally:
        wh.release_writer()


def run_stages(cfg: RunConfig, run_id: str) -> list[dict]:
    """topics -> questions -> dialogues; a stage stopped by the budget ends the sequence."""
    reports = []
    for stage_task in STAGE_TASKS:
        reports.append(stage_task(cfg, run_id))
        if reports[-1].get("stopped"):
            break
    return reports


def grow(cfg: RunConfig, wh: Warehouse, run_id: str, outcome: dict, rounds: int) -> list[dict]:
    """Run the stages until the dialogue target is met: while openers run out, add the next
    meta-topic to the scope; say in outcome["status"] why a run ends short."""
    cfg = cfg.model_copy(deep=True)  # the scope grows on a copy, never the caller's config
    reports: list[dict] = []
    for _ in range(rounds):
        reports += run_stages(cfg, run_id)
        if reports[-1].get("stopped"):
            return reports
        todo, need = openers_to_do(cfg, wh)
        if not need:
            return reports
        limit = cfg.topics.limit_meta_topics
        if limit and limit < len(cfg.topics.meta_topics):
            cfg.topics.limit_meta_topics = limit + 1
            log.info("short by %d dialogues: adding meta-topic %r", need,
                     cfg.topics.meta_topics[limit])  # fmt: skip
        elif not todo:
            outcome["status"] = (
                f"short of target by {need}: every opener in scope has a dialogue; add "
                "meta-topics or raise topics.subtopics_per_topic / questions.per_subtopic"
            )
            return reports
        # else: openers remain (their dialogues failed this round): try them again
    _, need = openers_to_do(cfg, wh)
    if need:
        outcome["status"] = f"short of target by {need} after {rounds} rounds"
    return reports


def summarize(run_id: str, reports: list[dict], wh: Warehouse, wall_s: float) -> dict:
    failures: dict[str, int] = {}
    for r in reports:
        for reason in r.get("failures", {}).values():
            key = reason.split(": ", 1)[-1] if reason.startswith("round ") else reason
            failures[key] = failures.get(key, 0) + 1
    totals = wh.query(
        "SELECT (SELECT count(*) FROM topics) AS topics, (SELECT count(*) FROM openers) AS "
        "openers, (SELECT count(*) FROM dialogues) AS dialogues, (SELECT count(*) FROM dataset)"
        " AS dataset, (SELECT count(*) FROM llm_calls) AS llm_calls"
    ).to_pylist()[0]
    stopped = next((r["stopped"] for r in reports if r.get("stopped")), None)
    stages: dict[str, dict] = {}
    for r in reports:  # a backfill runs a stage more than once: add the rounds up
        s = stages.setdefault(r["stage"], dict.fromkeys(("rows_written", *SUMMED, "wall_s"), 0))
        for k in s:
            s[k] = round(s[k] + r.get(k, 0), 6)
    return {
        "run_id": run_id,
        "status": f"stopped: budget ({stopped})" if stopped else "completed",
        "stages": stages,
        **{k: round(sum(r.get(k, 0) for r in reports), 6) for k in SUMMED},
        "failures": failures,
        "warehouse_rows": totals,
        "wall_s": round(wall_s, 2),
    }


def summary_markdown(summary: dict) -> str:
    lines = [
        f"### convoforge run `{summary['run_id']}`: {summary['status']}",
        "",
        "| stage | rows written | LLM calls | cache hits | tokens | dollars | wall s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, s in summary["stages"].items():
        tokens = s["prompt_tokens"] + s["completion_tokens"]
        lines.append(
            f"| {name} | {s['rows_written']} | {s['llm_calls']} | {s['cache_hits']} | "
            f"{tokens} | {s['cost_usd']:.4f} | {s['wall_s']:.1f} |"
        )
    failures = ", ".join(f"{k}: {v}" for k, v in summary["failures"].items()) or "none"
    lines += ["", f"**Failures by reason:** {failures}",
              f"**Warehouse rows:** {summary['warehouse_rows']}",
              f"**Wall time:** {summary['wall_s']:.1f} s"]  # fmt: skip
    return "\n".join(lines)


def record_run(config: RunConfig, wh: Warehouse, summary: dict) -> None:
    """The same summary in the warehouse (`runs`) and, inside Prefect, as a run artifact."""
    run_id = summary["run_id"]
    wh.write("runs", [dict(id=row_id(run_id, "run", 0), run_id=run_id, created_at=utcnow(),
                           status=summary["status"], config_json=config.model_dump_json(),
                           summary_json=json.dumps(summary), wall_s=summary["wall_s"])],
             run_id)  # fmt: skip
    from prefect.artifacts import create_markdown_artifact
    from prefect.context import FlowRunContext

    if FlowRunContext.get() is not None:
        create_markdown_artifact(
            markdown=summary_markdown(summary), key="run-summary", description="convoforge run"
        )


def timed_run(
    config: RunConfig, run_id: str, body: Callable[[RunConfig, Warehouse, dict], list[dict]]
) -> dict:
    """Run body(cfg, wh, outcome) -> stage reports inside writing_run; record the summary.
    body may set outcome["status"] to say why a run ended short of its goal."""
    started = time.monotonic()
    outcome: dict = {}
    with writing_run(config) as (cfg, wh):
        reports = body(cfg, wh, outcome)
    summary = summarize(run_id, reports, wh, time.monotonic() - started)
    if outcome.get("status") and summary["status"] == "completed":
        summary["status"] = outcome["status"]
    record_run(config, wh, summary)
    return summary
