"""convoforge command line. `convoforge --help` and each command's --help are the manual."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

# Before Prefect is imported: no telemetry from a tool that runs offline.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

import typer  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from convoforge.config import ConfigError, describe_validation_error, load_config  # noqa: E402

app = typer.Typer(
    help="Build UltraChat-style multi-turn dialogue datasets (Prefect + Parquet + DuckDB).",
    no_args_is_help=True,
    add_completion=False,
)
err = Console(stderr=True)
out = Console()

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML run config")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a config key, e.g. --set dialogues.rounds_min=4"),
]
WarehouseOpt = Annotated[
    str | None, typer.Option("--warehouse", "-w", help="Warehouse root (overrides config)")
]


def _config(config: Path | None, sets: list[str] | None, warehouse: str | None = None, **flags):
    overrides = list(sets or [])
    if warehouse:
        overrides.append(f"warehouse.root={json.dumps(warehouse)}")
    overrides += [f"{k}={json.dumps(v)}" for k, v in flags.items() if v is not None]
    try:
        return load_config(config, overrides)
    except ConfigError as e:
        err.print(f"[red]error:[/] {e}", markup=True, highlight=False)
        raise typer.Exit(2) from None


def _progress_bar():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from convoforge import progress as prog

    bar = Progress(
        "[bold]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )
    ids: dict[str, int] = {}

    def listener(stage: str, done: int, total: int) -> None:
        if stage not in ids:
            ids[stage] = bar.add_task(stage, total=total)
        bar.update(ids[stage], completed=done, total=total)

    prog.add_listener(listener)
    return bar


def _print_summary(summary: dict) -> None:
    t = Table(title=f"run {summary['run_id']}: {summary['status']}")
    for col in ("stage", "rows written", "LLM calls", "cache hits", "tokens", "wall s"):
        t.add_column(col, justify="right" if col != "stage" else "left")
    for name, s in summary["stages"].items():
        t.add_row(
            name,
            str(s["rows_written"]),
            str(s["llm_calls"]),
            str(s["cache_hits"]),
            str(s["prompt_tokens"] + s["completion_tokens"]),
            f"{s['wall_s']:.1f}",
        )
    out.print(t)
    out.print(f"warehouse rows: {summary['warehouse_rows']}")
    out.print(
        f"failures: {summary['failures'] or 'none'}   cost: ${summary['cost_usd']:.4f}   "
        f"wall time: {summary['wall_s']:.1f}s"
    )


@app.command()
def run(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    warehouse: WarehouseOpt = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (overrides config)")] = None,
    run_id: Annotated[str | None, typer.Option(help="Run id (default: time + random)")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the whole DAG. Re-running with the same config resumes: finished work is skipped and
    answered LLM requests come from the warehouse cache.

    Example: convoforge run --config examples/tiny.toml
    """
    cfg = _config(config, set_, warehouse, seed=seed)
    _setup_logging(verbose)
    from flows.build import build_dataset

    _run_flow(cfg, build_dataset, config=cfg, run_id=run_id)


def _run_flow(cfg, flow, **params) -> None:
    """Run a writing flow with progress bars; print its summary; map outcomes to exit codes."""
    from convoforge.llm import LLMError
    from convoforge.procs import ServiceError
    from warehouse.store import WarehouseBusy, WarehouseError

    try:
        with _progress_bar():
            summary = flow(**params)
    except WarehouseBusy as e:
        err.print(f"[red]error:[/] {e}")
        raise typer.Exit(3) from None
    except (WarehouseError, ServiceError) as e:
        err.print(f"[red]error:[/] {e}")
        raise typer.Exit(1) from None
    except LLMError as e:  # fatal: a bad key, an unknown model
        err.print(f"[red]error:[/] the LLM endpoint refused the run: {e.reason}. Fix the key or "
                  "model and run again; everything answered so far is kept.")  # fmt: skip
        raise typer.Exit(1) from None
    _summary_exit(summary, cfg)


def _summary_exit(summary: dict, cfg) -> None:
    _print_summary(summary)
    out.print(
        f"query it: convoforge sql --warehouse {cfg.warehouse.root} "
        '"select sector, count(*) from dataset group by 1"'
    )
    if summary["status"].startswith("stopped"):
        raise typer.Exit(4)
    if summary["status"] != "completed":
        raise typer.Exit(5)


def _terminate_cleanly() -> None:
    # SIGTERM (kill, systemd, a CI timeout) unwinds like Ctrl-C: the embedded server stops and
    # everything answered so far is committed.
    import signal

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def _setup_logging(verbose: bool) -> None:
    _terminate_cleanly()
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("httpx", "httpx2", "openai"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@app.command()
def backfill(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    warehouse: WarehouseOpt = None,
    target_dialogues: Annotated[
        int, typer.Option("--target-dialogues", "-n", help="Complete dialogues wanted")
    ] = 40,
    sector: Annotated[str, typer.Option(help="Sector to fill")] = "world",
    add_meta_topic: Annotated[
        list[str] | None, typer.Option("--add-meta-topic", help="A meta-topic to add")
    ] = None,
    max_rounds: Annotated[int, typer.Option(help="Scope-growing rounds at most")] = 10,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Fill only what is missing: bring a sector to N complete dialogues, adding meta-topics to
    the scope while openers run out.

    Example: convoforge backfill -c examples/small.toml --target-dialogues 500
    """
    from pydantic import ValidationError

    from flows.backfill import BackfillTarget
    from flows.backfill import backfill as backfill_flow

    cfg = _config(config, set_, warehouse)
    try:
        target = BackfillTarget(
            sector=sector,
            target_dialogues=target_dialogues,
            add_meta_topics=add_meta_topic or [],
            max_rounds=max_rounds,
        )
    except ValidationError as e:
        err.print(f"[red]error:[/] {describe_validation_error(e, 'backfill options')}")
        raise typer.Exit(2) from None
    _setup_logging(verbose)
    _run_flow(cfg, backfill_flow, target=target, config=cfg)


@app.command()
def serve(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    warehouse: WarehouseOpt = None,
    port: Annotated[int, typer.Option(help="Port of the local Prefect server")] = 4200,
) -> None:
    """Start a local Prefect server (unless PREFECT_API_URL is set), register the build and
    backfill deployments with this config as the Run form's defaults, and execute the runs
    started from the UI. Ctrl-C stops everything it started."""
    from convoforge.prefect_server import local_prefect_server

    cfg = _config(config, set_, warehouse)
    _setup_logging(False)
    with local_prefect_server(port) as api_url:
        # Imported once PREFECT_API_URL points at the server, so Prefect never starts its own.
        from prefect import serve as prefect_serve

        from flows.deployments import deployments

        ui = api_url.removesuffix("/api")
        out.print(
            f"Prefect UI: [bold]{ui}[/]  (deployments: build-dataset/build, backfill/backfill)"
        )
        out.print(f"warehouse: {Path(cfg.warehouse.root).resolve()}   Ctrl-C to stop")
        try:
            prefect_serve(*deployments(cfg), print_starting_message=False)
        except KeyboardInterrupt:
            pass


@app.command()
def sql(
    query: Annotated[
        str,
        typer.Argument(
            help="SQL over the views: topics, openers, dialogues, "
            "llm_calls, runs, dataset, lineage, stats, cost_by_stage"
        ),
    ],
    config: ConfigOpt = None,
    set_: SetOpt = None,
    warehouse: WarehouseOpt = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table | csv | json")] = "table",
) -> None:
    """Query the warehouse read-only (a build may be running). Same views as
    `duckdb <warehouse>/catalog.duckdb -readonly`."""
    import duckdb

    from warehouse.store import Warehouse, WarehouseError

    cfg = _config(config, set_, warehouse)
    wh = Warehouse(cfg.warehouse.root, cfg.warehouse.catalog or None)
    if not wh.root.exists():
        err.print(f"[red]error:[/] no warehouse at {wh.root}; run `convoforge run` first")
        raise typer.Exit(2)
    try:
        wh.ensure_catalog()
    except WarehouseError as e:
        err.print(f"[yellow]warning:[/] {e}")
    try:
        with duckdb.connect(str(wh.catalog_path), read_only=True) as con:
            rel = con.sql(query)
            if rel is None:
                return
            columns, rows = rel.columns, rel.fetchall()
    except duckdb.Error as e:
        err.print(f"[red]error:[/] {e}")
        raise typer.Exit(1) from None
    if fmt == "json":
        out.print_json(json.dumps([dict(zip(columns, r, strict=True)) for r in rows], default=str))
    elif fmt == "csv":
        import csv

        w = csv.writer(sys.stdout)
        w.writerow(columns)
        w.writerows(rows)
    else:
        t = Table(*columns)
        for r in rows:
            t.add_row(*("" if v is None else str(v) for v in r))
        out.print(t)


@app.command("config")
def show_config(config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """Validate a config and print it resolved (defaults + file + env + --set)."""
    out.print_json(_config(config, set_).model_dump_json())


if __name__ == "__main__":
    app()
