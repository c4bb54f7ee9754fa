"""Backfill to a target: generate only what the warehouse lacks, growing the scope (one more
meta-topic at a time) until the target is met, the budget ends, or nothing is left to grow."""

from __future__ import annotations

from typing import Literal

from prefect import flow
from pydantic import BaseModel, ConfigDict, Field

from convoforge.ids import new_run_id
from flows.common import grow, timed_run
from schemas.config import RunConfig


class BackfillTarget(BaseModel):
    """What the warehouse should hold when the backfill ends."""

    model_config = ConfigDict(extra="forbid")
    sector: Literal["world"] = "world"
    target_dialogues: int = Field(40, ge=1, description="Complete dialogues wanted in the sector")
    add_meta_topics: list[str] = Field(
        default_factory=list, description="Meta-topics to add to the config's list and cover"
    )
    max_rounds: int = Field(10, ge=1, le=1000, description="Scope-growing rounds at most")


def backfill_config(target: BackfillTarget, config: RunConfig) -> RunConfig:
    cfg = config.model_copy(deep=True)
    cfg.sectors = [target.sector]
    cfg.dialogues.target_dialogues = target.target_dialogues
    new = [m for m in target.add_meta_topics if m not in cfg.topics.meta_topics]
    if new:
        limit = cfg.topics.limit_meta_topics
        # The added meta-topics go right after those already in scope, so they are covered.
        scope = cfg.topics.in_scope()
        rest = cfg.topics.meta_topics[len(scope) :]
        cfg.topics.meta_topics = scope + new + rest
        cfg.topics.limit_meta_topics = len(scope) + len(new) if limit else 0
    return cfg


@flow(name="backfill", log_prints=True)
def backfill(
    target: BackfillTarget = BackfillTarget(),  # noqa: B008 (pydantic defaults render the UI form)
    config: RunConfig = RunConfig(),  # noqa: B008
    run_id: str | None = None,
) -> dict:
    """Bring a sector to N complete dialogues, generating only the missing delta."""
    run_id = run_id or new_run_id()
    cfg = backfill_config(target, config)
    return timed_run(
        cfg, run_id, lambda c, wh, outcome: grow(c, wh, run_id, outcome, target.max_rounds)
    )
