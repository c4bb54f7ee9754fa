"""The build DAG: meta-topics -> subtopics -> questions -> dialogues, each stored as it is made."""

from __future__ import annotations

from prefect import flow

from convoforge.ids import new_run_id
from flows.common import grow, run_stages, timed_run
from schemas.config import RunConfig

GROW_ROUNDS = 10  # scope-growing rounds a targeted build may take before it reports a shortfall


@flow(name="build-dataset", log_prints=True)
def build_dataset(config: RunConfig = RunConfig(), run_id: str | None = None) -> dict:  # noqa: B008 (a pydantic default renders the UI form)
    """Build (or resume) a dataset: every stage skips the work the warehouse already holds.
    With dialogues.target_dialogues set, the scope grows by meta-topics until it is met."""
    run_id = run_id or new_run_id()

    def body(cfg: RunConfig, wh, outcome: dict) -> list[dict]:
        if cfg.dialogues.target_dialogues:
            return grow(cfg, wh, run_id, outcome, rounds=GROW_ROUNDS)
        return run_stages(cfg, run_id)

    return timed_run(config, run_id, body)
