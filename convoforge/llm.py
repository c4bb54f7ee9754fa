"""The LLM gateway: one async OpenAI-compatible client per role, bounded concurrency, retries
with jittered backoff that honour Retry-After, token/dollar accounting, a budget, and the
response cache + ledger kept in the warehouse table `llm_calls`."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import openai

from convoforge.ids import canonical_json, request_hash, utcnow
from schemas.config import RoleConfig, RunConfig
from warehouse.store import Warehouse

log = logging.getLogger(__name__)


class LLMError(RuntimeError):
    """A request that failed for good. `reason` is short and goes into the warehouse."""

    def __init__(self, reason: str, *, fatal: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.fatal = fatal  # the run cannot go on (bad key, unknown model)


class BudgetExhausted(RuntimeError):
    pass


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str
    call_id: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    cached: bool


@dataclass
class GatewayStats:
    calls: int = 0  # requests that reached an endpoint and succeeded
    cache_hits: int = 0
    failures: Counter = field(default_factory=Counter)
    retries: Counter = field(default_factory=Counter)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    def as_dict(self) -> dict:
        return {
            "llm_calls": self.calls,
            "cache_hits": self.cache_hits,
            "retries": dict(self.retries),
            "failed_calls": dict(self.failures),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": round(self.cost_usd, 6),
        }


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def _retry_after(headers: httpx.Headers | None) -> float | None:
    if not headers:
        return None
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value:
            try:
                return max(0.0, float(value) / scale)
            except ValueError:
                continue  # an HTTP date; rare for LLM APIs, fall back to our own backoff
    return None


def _error_code(err: openai.APIStatusError) -> str:
    body = err.body if isinstance(err.body, dict) else {}
    inner = body.get("error", body) if isinstance(body, dict) else {}
    code = inner.get("code") or inner.get("type") if isinstance(inner, dict) else None
    return f"http {err.status_code}" + (f" {code}" if code else "")


class Gateway:
    def __init__(self, cfg: RunConfig, warehouse: Warehouse, run_id: str):
        self.cfg = cfg
        self.warehouse = warehouse
        self.run_id = run_id
        self.stats = GatewayStats()
        self._clients: dict[str, openai.AsyncOpenAI] = {}
        self._limits: dict[str, asyncio.Semaphore] = {}
        self._inflight: dict[str, asyncio.Future] = {}
        self._cache = self._load_cache()
        # The budget is per run: stages that ran before this gateway count too.
        spent = warehouse.query(
            "SELECT coalesce(sum(prompt_tokens + completion_tokens), 0) AS t, "
            "coalesce(sum(cost_usd), 0) AS usd FROM llm_calls WHERE run_id = ?",
            [run_id],
        ).to_pylist()[0]
        self._spent_before = (int(spent["t"]), float(spent["usd"]))
        self._journal_path = warehouse.journal_path("llm_calls", run_id)
        self._journal = None
        self._rng = random.Random()

    # ---- cache -------------------------------------------------------------------------
    def _load_cache(self) -> dict[str, tuple]:
        self.warehouse.compact_journals("llm_calls")  # a crashed run's answers count too
        rows = self.warehouse.query(
            "SELECT id, response, finish_reason, prompt_tokens, completion_tokens, model "
            "FROM llm_calls WHERE status = 'ok' QUALIFY row_number() OVER "
            "(PARTITION BY id ORDER BY created_at) = 1"
        ).to_pylist()
        return {
            r["id"]: (
                r["response"],
                r["finish_reason"],
                r["prompt_tokens"] or 0,
                r["completion_tokens"] or 0,
                r["model"],
            )
            for r in rows
        }

    def _record(self, row: dict) -> None:
        if self._journal is None:
            self._journal_path.parent.mkdir(parents=True, exist_ok=True)
            self._journal = open(self._journal_path, "a", encoding="utf-8")
        # One line per call, flushed at once: a SIGKILL loses at most the line being written.
        self._journal.write(json.dumps(row, default=str) + "\n")
        self._journal.flush()

    def commit(self) -> None:
        """Move the journal into Parquet; called at the end of every stage."""
        if self._journal is not None:
            self._journal.close()
            self._journal = None
            self.warehouse.compact_journals("llm_calls")
            self._journal_path = self.warehouse.journal_path("llm_calls", self.run_id)

    # ---- clients -----------------------------------------------------------------------
    def _client(self, role: str, rc: RoleConfig) -> openai.AsyncOpenAI:
        if role not in self._clients:
            if not rc.base_url:
                raise LLMError(
                    f"role {role} has no base_url (is the embedded server up?)", fatal=True
                )
            key = os.environ.get(rc.api_key_env) or "not-needed"
            self._clients[role] = openai.AsyncOpenAI(
                base_url=rc.base_url, api_key=key, max_retries=0, timeout=self.cfg.llm.timeout_s
            )
        return self._clients[role]

    def _limit(self, base_url: str) -> asyncio.Semaphore:
        if base_url not in self._limits:
            self._limits[base_url] = asyncio.Semaphore(self.cfg.llm.concurrency)
        return self._limits[base_url]

    def _over_budget(self) -> str | None:
        b = self.cfg.llm
        tokens = self._spent_before[0] + self.stats.prompt_tokens + self.stats.completion_tokens
        usd = self._spent_before[1] + self.stats.cost_usd
        if b.budget_tokens and tokens >= b.budget_tokens:
            return f"token budget {b.budget_tokens} reached ({tokens} used)"
        if b.budget_usd and usd >= b.budget_usd:
            return f"dollar budget {b.budget_usd} reached (${usd:.4f} used)"
        return None

    # ---- the one public call -----------------------------------------------------------
    async def complete(
        self, role: str, messages: list[dict], *, seed: int, json_schema: dict | None = None
    ) -> Completion:
        rc = self.cfg.role(role)
        request: dict = {
            "model": rc.model,
            "messages": messages,
            "temperature": rc.temperature,
            "max_tokens": rc.max_tokens,
            "seed": seed,
        }
        if json_schema is not None and rc.structured == "json_schema":
            request["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": json_schema, "strict": True},
            }
        elif json_schema is not None and rc.structured == "json_object":
            request["response_format"] = {"type": "json_object", "schema": json_schema}
        key = request_hash(request)
        if key in self._cache:
            self.stats.cache_hits += 1
            return self._from_cache(key)
        if key in self._inflight:  # the same request is already on its way: share its answer
            await asyncio.shield(self._inflight[key])
            self.stats.cache_hits += 1
            return self._from_cache(key)
        fut = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        try:
            return await self._call(role, rc, request, key)
        finally:
            fut.set_result(None)
            del self._inflight[key]

    def _from_cache(self, key: str) -> Completion:
        if key not in self._cache:
            raise LLMError("shared request failed")
        text, finish, pt, ct, model = self._cache[key]
        return Completion(text, finish or "stop", key, model, pt, ct, cached=True)

    async def _call(self, role: str, rc: RoleConfig, request: dict, key: str) -> Completion:
        llm = self.cfg.llm
        client = self._client(role, rc)
        row = {
            "id": key,
            "run_id": self.run_id,
            "role": role,
            "endpoint": rc.base_url,
            "model": rc.model,
            "request": canonical_json(request),
        }
        attempt = 0
        started = time.monotonic()
        async with self._limit(rc.base_url):
            while True:
                over = self._over_budget()
                if over:
                    raise BudgetExhausted(over)
                attempt += 1
                try:
                    comp = await self._once(client, request)
                    break
                except _Retryable as e:
                    self.stats.retries[e.reason] += 1
                    if attempt >= llm.max_attempts:
                        self._fail(row, attempt, started, f"{e.reason} after {attempt} attempts")
                    delay = min(llm.backoff_max_s, llm.backoff_base_s * 2 ** (attempt - 1))
                    delay = self._rng.uniform(delay / 2, delay)  # jitter spreads a 429 storm
                    if e.retry_after is not None:
                        delay = max(delay, min(e.retry_after, llm.backoff_max_s * 4))
                    log.debug("%s: %s, retry %d in %.2fs", role, e.reason, attempt, delay)
                    await asyncio.sleep(delay)
                except LLMError as e:
                    self._fail(row, attempt, started, e.reason, fatal=e.fatal)
        text, finish, pt, ct, model = comp
        cost = (pt * rc.usd_per_1m_input + ct * rc.usd_per_1m_output) / 1e6
        self.stats.calls += 1
        self.stats.prompt_tokens += pt
        self.stats.completion_tokens += ct
        self.stats.cost_usd += cost
        self._record(
            {
                **row,
                "created_at": utcnow().isoformat(),
                "response": text,
                "finish_reason": finish,
                "prompt_tokens": pt,
                "completion_tokens": ct,
                "latency_ms": (time.monotonic() - started) * 1000,
                "attempts": attempt,
                "cost_usd": cost,
                "status": "ok",
                "error": None,
            }
        )
        self._cache[key] = (text, finish, pt, ct, rc.model)
        return Completion(text, finish, key, rc.model, pt, ct, cached=False)

    def _fail(self, row: dict, attempts: int, started: float, reason: str, fatal=False):
        self.stats.failures[reason.split(" after ")[0]] += 1
        self._record(
            {
                **row,
                "created_at": utcnow().isoformat(),
                "response": None,
                "finish_reason": None,
                "prompt_tokens": 0,
                "completion_tokens": 0,
                "latency_ms": (time.monotonic() - started) * 1000,
                "attempts": attempts,
                "cost_usd": 0.0,
                "status": "error",
                "error": reason,
            }
        )
        raise LLMError(reason, fatal=fatal)

    async def _once(self, client: openai.AsyncOpenAI, request: dict) -> tuple:
        try:
            resp = await client.chat.completions.create(**request)
        except openai.RateLimitError as e:
            raise _Retryable("http 429", _retry_after(e.response.headers)) from e
        except openai.APITimeoutError as e:
            raise _Retryable("timeout") from e
        except openai.APIConnectionError as e:
            raise _Retryable("connection error") from e
        except openai.APIStatusError as e:
            if e.status_code >= 500 or e.status_code in (408, 409):
                raise _Retryable(f"http {e.status_code}", _retry_after(e.response.headers)) from e
            detail = str(e.message)[:200]
            raise LLMError(
                f"{_error_code(e)}: {detail}", fatal=e.status_code in (401, 403, 404)
            ) from e
        except (openai.APIResponseValidationError, json.JSONDecodeError, ValueError) as e:
            raise _Retryable("malformed response") from e
        choices = getattr(resp, "choices", None)
        if not choices or choices[0].message is None:
            raise _Retryable("malformed response")
        text = (choices[0].message.content or "").strip()
        if not text:
            raise _Retryable("empty content")
        usage = resp.usage
        return (
            text,
            choices[0].finish_reason or "stop",
            getattr(usage, "prompt_tokens", 0) or 0,
            getattr(usage, "completion_tokens", 0) or 0,
            resp.model,
        )

    async def aclose(self) -> None:
        self.commit()
        for c in self._clients.values():
            await c.close()
        self._clients.clear()
