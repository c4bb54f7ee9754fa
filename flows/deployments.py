"""The deployments `convoforge serve` registers: build and backfill, with runnable defaults.

Served with `prefect.serve` (one process that polls for runs and executes them) rather than a
prefect.yaml + work pool + worker: nothing to configure for a single machine, and the same
deployments move to a work pool unchanged (README, "Running at scale")."""

from __future__ import annotations

from pathlib import Path

from flows.backfill import BackfillTarget, backfill
from flows.build import build_dataset
from schemas.config import RunConfig

TAGS = ["convoforge"]


def form_defaults(cfg: RunConfig) -> RunConfig:
    """The config as the Run form shows it: the warehouse as an absolute path, so a run started
    from the UI writes where the CLI reads, whatever directory the worker runs in."""
    cfg = cfg.model_copy(deep=True)
    cfg.warehouse.root = str(Path(cfg.warehouse.root).expanduser().resolve())
    if cfg.warehouse.catalog:
        cfg.warehouse.catalog = str(Path(cfg.warehouse.catalog).expanduser().resolve())
    return cfg


def deployments(cfg: RunConfig) -> list:
    cfg = form_defaults(cfg)
    config = cfg.model_dump(mode="json")
    target = BackfillTarget(target_dialogues=max(cfg.dialogues.target_dialogues * 2, 20))
    return [
        build_dataset.to_deployment(
            name="build",
            parameters={"config": config},
            description="Build or resume a dataset: topics -> questions -> dialogues.",
            tags=TAGS,
        ),
        backfill.to_deployment(
            name="backfill",
            parameters={"target": target.model_dump(mode="json"), "config": config},
            description="Bring a sector to N complete dialogues, generating only the delta.",
            tags=TAGS,
        ),
    ]
