"""Stage: opener -> multi-turn dialogue between the user simulator and the assistant."""

from __future__ import annotations

import random
import re

from prefect import task

from convoforge.ids import derive_seed, row_id, utcnow
from convoforge.llm import BudgetExhausted, Gateway, LLMError
from convoforge.progress import track
from convoforge.prompts import load_prompt
from schemas.config import RunConfig
from tasks.runtime import as_completed_bounded, run_stage
from warehouse.store import Warehouse

# The user simulator often labels its line or wraps it in quotes; keep only the message.
_SPEAKER_PREFIX = re.compile(r"^\s*(?:\*\*)?(?:user|human|me|question)\s*(?:\*\*)?\s*:\s*", re.I)


def prompt_version() -> str:
    return "+".join(load_prompt(p).version for p in ("assistant", "user_simulator"))


def dialogue_id(opener_id: str) -> str:
    return row_id(opener_id, "dialogue", 0, prompt_version())


def rounds_for(cfg: RunConfig, opener_id: str) -> int:
    d = cfg.dialogues
    return random.Random(derive_seed(cfg.seed, opener_id, "rounds")).randint(
        d.rounds_min, d.rounds_max
    )


def recent(turns: list[dict], max_chars: int) -> list[dict]:
    """The most recent turns that fit max_chars, always starting with a user turn."""
    kept, used = [], 0
    for turn in reversed(turns):
        used += len(turn["content"])
        if kept and used > max_chars:
            break
        kept.append(turn)
    kept.reverse()
    while len(kept) > 1 and kept[0]["role"] != "user":
        kept.pop(0)
    return kept


def transcript(turns: list[dict], max_chars: int) -> str:
    names = {"user": "User", "assistant": "Assistant"}
    return "\n\n".join(f"{names[t['role']]}: {t['content']}" for t in recent(turns, max_chars))


def clean_user_turn(text: str) -> str:
    text = _SPEAKER_PREFIX.sub("", text.strip())
    if len(text) > 1 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text


async def synthesize(opener: dict, cfg: RunConfig, gw: Gateway, run_id: str) -> dict:
    """One dialogue. LLM failures end it as a 'failed' row with the reason; every answered
    call is in the cache, so a re-run replays the finished turns for free."""
    did = dialogue_id(opener["id"])
    target = rounds_for(cfg, opener["id"])
    assistant_p, user_p = load_prompt("assistant"), load_prompt("user_simulator")
    hist = cfg.dialogues.history_chars
    turns = [{"role": "user", "content": opener["text"]}]
    call_ids: list[str] = []
    status, reason = "complete", None
    try:
        for rnd in range(target):
            if rnd:
                system, user = user_p.render(transcript=transcript(turns, hist))
                comp = await gw.complete(
                    "user_simulator",
                    [{"role": "system", "content": system}, {"role": "user", "content": user}],
                    seed=derive_seed(cfg.seed, did, "user", rnd),
                )
                call_ids.append(comp.call_id)
                text = clean_user_turn(comp.text)
                if not text:
                    raise LLMError("user simulator returned an empty turn")
                turns.append({"role": "user", "content": text})
            comp = await gw.complete(
                "assistant",
                [{"role": "system", "content": assistant_p.system}, *recent(turns, hist)],
                seed=derive_seed(cfg.seed, did, "assistant", rnd),
            )
            call_ids.append(comp.call_id)
            turns.append({"role": "assistant", "content": comp.text})
    except LLMError as e:
        if e.fatal:
            raise
        status, reason = "failed", f"round {len(turns) // 2 + 1}: {e.reason}"
    return dict(
        id=did, parent_id=opener["id"], run_id=run_id, created_at=utcnow(),
        sector=opener["sector"], opener=opener["text"], rounds_target=target,
        rounds=sum(t["role"] == "assistant" for t in turns), turns=turns, status=status,
        failure_reason=reason, user_model=cfg.llm.user_simulator.model,
        assistant_model=cfg.llm.assistant.model, prompt_version=prompt_version(),
        llm_call_ids=call_ids,
    )  # fmt: skip


def openers_to_do(cfg: RunConfig, wh: Warehouse) -> tuple[list[dict], int]:
    """Openers in scope whose dialogue is not complete yet (anti-join on deterministic ids), in
    a stable order, and how many more complete dialogues the target asks for."""
    metas = cfg.topics.in_scope()
    openers = wh.query(
        "SELECT DISTINCT ON (id) * FROM openers WHERE sector IN (SELECT unnest(?)) "
        "AND meta_topic IN (SELECT unnest(?)) ORDER BY id",
        [cfg.sectors, metas],
    ).to_pylist()
    done = wh.ids("dialogues", "status = 'complete'")
    todo = [o for o in openers if dialogue_id(o["id"]) not in done]
    target = cfg.dialogues.target_dialogues
    need = max(0, target - (len(openers) - len(todo))) if target else len(todo)
    return todo, need


async def dialogues_stage(cfg: RunConfig, wh: Warehouse, gw: Gateway, run_id: str) -> dict:
    todo, need = openers_to_do(cfg, wh)
    buffer: list[dict] = []
    counts = {"complete": 0, "failed": 0}
    failures: dict[str, str] = {}
    stopped = None

    def admit(in_flight: int) -> bool:
        # A failed dialogue makes room for the next opener: the target counts complete ones.
        return not stopped and counts["complete"] + in_flight < need

    def flush() -> None:
        wh.write("dialogues", buffer, run_id)
        gw.commit()  # the ledger reaches Parquet no later than the dialogues it paid for
        buffer.clear()

    async def one(opener: dict):
        try:
            return await synthesize(opener, cfg, gw, run_id)
        except BudgetExhausted as e:
            return e

    try:
        with track("dialogues", min(need, len(todo))) as progress:
            async for _, row in as_completed_bounded(todo, one, cfg.llm.concurrency, admit):
                if isinstance(row, BudgetExhausted):
                    stopped = str(row)  # unfinished dialogues stay unwritten; they resume
                    continue
                counts[row["status"]] += 1
                if row["status"] == "complete":
                    progress.advance()
                else:
                    failures[row["id"]] = row["failure_reason"]
                buffer.append(row)
                if len(buffer) >= cfg.dialogues.flush_every:
                    flush()
    finally:
        flush()  # also when a fatal error (a revoked key) ends the stage: keep what is done
    return {
        "stage": "dialogues",
        "rows_written": counts["complete"] + counts["failed"],
        "complete": counts["complete"],
        "failed": counts["failed"],
        "short_of_target": max(0, need - counts["complete"]),
        "failures": failures,
        "stopped": stopped,
    }


@task(name="dialogues")
def dialogues_task(cfg: RunConfig, run_id: str) -> dict:
    return run_stage(dialogues_stage, cfg, run_id)
