"""What every stage task shares: open the warehouse and the gateway, run the async stage, commit."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from convoforge import progress as prog
from convoforge.ids import derive_seed, row_id, utcnow
from convoforge.llm import BudgetExhausted, Gateway, LLMError
from convoforge.parsing import list_schema, parse_list
from convoforge.progress import track
from convoforge.prompts import load_prompt
from schemas.config import RunConfig
from warehouse.store import Warehouse

log = logging.getLogger(__name__)
T = TypeVar("T")
Stage = Callable[[RunConfig, Warehouse, Gateway, str], Awaitable[dict]]


def run_async(coro: Awaitable[T]) -> T:
    """asyncio.run, also from a thread whose loop is already running (Prefect, notebooks)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    ctx = contextvars.copy_context()  # Prefect's run context must follow into the thread
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(ctx.run, asyncio.run, coro).result()


class PrefectProgress:
    """Mirror stage progress into Prefect progress artifacts (shown on the run's page), pushing
    at most every `every` seconds so a fast stage does not flood the API."""

    def __init__(self, every: float = 2.0):
        self.every = every
        self.state: dict[str, tuple[int, int]] = {}
        self._pushed: dict[str, tuple[int, int]] = {}
        self._ids: dict[str, Any] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        self.state[stage] = (done, total)

    async def push(self) -> None:
        from prefect.artifacts import acreate_progress_artifact, aupdate_progress_artifact

        for stage, (done, total) in list(self.state.items()):
            if self._pushed.get(stage) == (done, total):
                continue
            pct = 100.0 * done / total if total else 100.0
            if stage not in self._ids:
                self._ids[stage] = await acreate_progress_artifact(
                    progress=pct, key=f"progress-{stage}", description=f"{stage}: {done}/{total}"
                )
            else:
                await aupdate_progress_artifact(
                    self._ids[stage], progress=pct, description=f"{stage}: {done}/{total}"
                )
            self._pushed[stage] = (done, total)

    async def loop(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            await self.push()


@contextlib.asynccontextmanager
async def prefect_progress():
    """Progress artifacts while inside a Prefect task run; nothing otherwise."""
    from prefect.context import TaskRunContext

    if TaskRunContext.get() is None:
        yield
        return
    mirror = PrefectProgress()
    prog.add_listener(mirror)
    pusher = asyncio.create_task(mirror.loop())
    try:
        yield
    finally:
        prog.remove_listener(mirror)
        pusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pusher
        try:
            await mirror.push()
        except Exception as e:  # progress display must never fail a stage
            log.warning("could not update the progress artifact: %s", e)


def run_stage(stage: Stage, cfg: RunConfig, run_id: str) -> dict:
    """Run one stage with its own gateway; whatever happens, answered calls reach llm_calls."""
    wh = Warehouse(cfg.warehouse.root, cfg.warehouse.catalog or None)

    async def go() -> dict:
        gw = Gateway(cfg, wh, run_id)
        started = time.monotonic()
        try:
            async with prefect_progress():
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


async def ask_for_list(
    gw: Gateway, cfg: RunConfig, prompt_name: str, parent: dict, n: int, max_words: int, **values
) -> list[tuple[dict, str]]:
    """Ask the question writer for n items about a parent row: per item, the columns every
    child row shares (id, parent_id, idx, LLM lineage) and the item's text."""
    prompt = load_prompt(prompt_name)
    system, user = prompt.render(n=n, **values)
    comp = await gw.complete(
        "question_writer",
        [{"role": "system", "content": system}, {"role": "user", "content": user}],
        seed=derive_seed(cfg.seed, parent["id"], prompt_name),
        json_schema=list_schema(n),
    )
    now = utcnow()
    kind = prompt_name.removesuffix("s")  # "subtopics" -> "subtopic", "questions" -> "question"
    return [
        (dict(id=row_id(parent["id"], kind, i, prompt.version), parent_id=parent["id"],
              created_at=now, idx=i, model=comp.model, prompt_version=prompt.version,
              llm_call_id=comp.call_id), item)
        for i, item in enumerate(parse_list(comp.text, limit=n, max_words=max_words))
    ]  # fmt: skip


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
