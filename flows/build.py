"""The build DAG: meta-topics -> subtopics -> questions -> dialogues, each stored as it is made."""

from __future__ import annotations

import json
import logging
import time
from contextlib import ExitStack

from prefect import flow

from convoforge.embedded import embedded_server, with_endpoint
from convoforge.ids import new_run_id, row_id, utcnow
from schemas.config import RunConfig
from tasks.dialogues import dialogues_task
from tasks.questions import questions_task
from tasks.topics import topics_task
from warehouse.store import Warehouse, WarehouseError

log = logging.getLogger(__name__)

ROLES_USED = ("question_writer", "user_simulator", "assistant")
SUMMED = ("llm_calls", "cache_hits", "prompt_tokens", "completion_tokens", "cost_usd")


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
    return {
        "run_id": run_id,
        "status": f"stopped: budget ({stopped})" if stopped else "completed",
        "stages": {
            r["stage"]: {k: r.get(k, 0) for k in ("rows_written", *SUMMED, "wall_s")}
            for r in reports
        },
        **{k: round(sum(r.get(k, 0) for r in reports), 6) for k in SUMMED},
        "failures": failures,
        "warehouse_rows": totals,
        "wall_s": round(wall_s, 2),
    }


@flow(name="build-dataset", log_prints=True)
def build_dataset(config: RunConfig = RunConfig(), run_id: str | None = None) -> dict:  # noqa: B008 (a pydantic default renders the UI form)
    """Build (or resume) a dataset: every stage skips the work the warehouse already holds."""
    started = time.monotonic()
    run_id = run_id or new_run_id()
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
            reports = []
            for stage_task in (topics_task, questions_task, dialogues_task):
                reports.append(stage_task(cfg, run_id))
                if reports[-1].get("stopped"):
                    break
        summary = summarize(run_id, reports, wh, time.monotonic() - started)
        wh.write("runs", [dict(id=row_id(run_id, "run", 0), run_id=run_id, created_at=utcnow(),
                               status=summary["status"], config_json=config.model_dump_json(),
                               summary_json=json.dumps(summary), wall_s=summary["wall_s"])],
                 run_id)  # fmt: skip
        return summary
    finally:
        wh.release_writer()
