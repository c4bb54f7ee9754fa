"""What every stage task shares: open the warehouse and the gateway, run the async stage, commit."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from convoforge.llm import BudgetExhausted, Gateway, LLMError
from convoforge.progress import track
from schemas.config import RunConfig
from warehouse.store import Warehouse

T = TypeVar("T")
Stage = Callable[[RunConfig, Warehouse, Gateway, str], Awaitable[dict]]


def run_async(coro: Awaitable[T]) -> T:
    """asyncio.run, also from a thread whose loop is already running (Prefect, notebooks)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def run_stage(stage: Stage, cfg: RunConfig, run_id: str) -> dict:
    """Run one stage with its own gateway; whatever happens, answered calls reach llm_calls."""
    wh = Warehouse(cfg.warehouse.root, cfg.warehouse.catalog or None)

    async def go() -> dict:
        gw = Gateway(cfg, wh, run_id)
        started = time.monotonic()
        try:
            report = await stage(cfg, wh, gw, run_id)
        finally:
            await gw.aclose()
        report.update(gw.stats.as_dict())
        report["wall_s"] = round(time.monotonic() - started, 2)
        return report

    return run_async(go())


async def as_completed_bounded(
    items: Iterable,
    fn: Callable[[Any], Awaitable[T]],
    limit: int,
    admit: Callable[[int], bool] = lambda in_flight: True,
):
    """Async-iterate (item, result) as each finishes, with at most `limit` in flight; a new
    item starts only while admit(number in flight) says so."""
    it = iter(items)
    pending: set[asyncio.Task] = set()
    owner: dict[asyncio.Task, Any] = {}

    def top_up() -> None:
        while len(pending) < limit and admit(len(pending)):
            try:
                item = next(it)
            except StopIteration:
                return
            t = asyncio.ensure_future(fn(item))
            owner[t] = item
            pending.add(t)

    top_up()
    try:
        while pending:
            done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                pending.discard(t)
                yield owner.pop(t), t.result()
            top_up()
    finally:
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


async def fan_out(
    stage: str,
    table: str,
    parents: list[dict],
    expand: Callable[[dict], Awaitable[list[dict]]],
    cfg: RunConfig,
    wh: Warehouse,
    run_id: str,
    label: Callable[[dict], str] = lambda p: p["id"],
) -> dict:
    """Expand each parent into child rows with an LLM; write the children not yet stored, one
    Parquet part per parent as it finishes. A parent whose call fails is reported, not fatal."""
    existing = wh.ids(table)
    written, failures, stopped = 0, {}, None

    async def safe(parent: dict):
        try:
            return await expand(parent)
        except (LLMError, BudgetExhausted) as e:
            return e

    with track(stage, len(parents)) as progress:
        async for parent, result in as_completed_bounded(parents, safe, cfg.llm.concurrency):
            if isinstance(result, BudgetExhausted):
                stopped = str(result)
            elif isinstance(result, LLMError):
                if result.fatal:
                    raise result
                failures[label(parent)] = result.reason
            else:
                rows = [r for r in result if r["id"] not in existing]
                wh.write(table, rows, run_id)
                written += len(rows)
            progress.advance()
    return {"stage": stage, "rows_written": written, "failures": failures, "stopped": stopped}
