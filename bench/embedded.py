"""Tokens/s on the embedded llama.cpp server: the bare openai SDK against the convoforge gateway
(ledger, cache, retries) in the same process, same prompts, same server.

Usage: python -m bench.embedded [--requests 8] [--max-tokens 96] [--concurrency 1]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time

import openai

from convoforge.embedded import MODEL_ALIAS, embedded_server, with_endpoint
from convoforge.llm import Gateway
from schemas.config import RunConfig
from warehouse.store import Warehouse


def _messages(i: int) -> list[dict]:
    return [{"role": "user", "content": f"In two sentences, why do people enjoy hobby #{i}?"}]


async def bare(url: str, n: int, max_tokens: int, conc: int) -> int:
    client = openai.AsyncOpenAI(base_url=url, api_key="x", max_retries=0)
    sem = asyncio.Semaphore(conc)

    async def one(i: int) -> int:
        async with sem:
            r = await client.chat.completions.create(
                model=MODEL_ALIAS, messages=_messages(i), max_tokens=max_tokens, seed=i,
                temperature=0.7,
            )  # fmt: skip
            return r.usage.completion_tokens

    try:
        return sum(await asyncio.gather(*(one(i) for i in range(n))))
    finally:
        await client.close()


async def gateway(gw: Gateway, n: int, offset: int) -> int:
    try:
        done = await asyncio.gather(
            *(gw.complete("assistant", _messages(offset + i), seed=i) for i in range(n))
        )
        return sum(c.completion_tokens for c in done)
    finally:
        await gw.aclose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--requests", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--concurrency", type=int, default=1)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = RunConfig.model_validate(
            {
                "warehouse": {"root": tmp},
                "llm": {"concurrency": a.concurrency, "assistant": {"max_tokens": a.max_tokens}},
            }
        )
        with embedded_server(cfg.embedded) as url:
            cfg = with_endpoint(cfg, url, ("assistant",))
            asyncio.run(bare(url, 1, 8, 1))  # warm-up: load weights into the page cache
            t = time.perf_counter()
            bare_tokens = asyncio.run(bare(url, a.requests, a.max_tokens, a.concurrency))
            bare_s = time.perf_counter() - t
            # Different prompts than the bare run, so no prefix cache favours either side.
            t = time.perf_counter()
            gw_tokens = asyncio.run(gateway(Gateway(cfg, Warehouse(tmp), "b"), a.requests, 1000))
            gw_s = time.perf_counter() - t
    print(f"requests={a.requests} max_tokens={a.max_tokens} concurrency={a.concurrency}")
    print(
        f"bare openai SDK     {bare_tokens:5d} completion tokens in {bare_s:6.1f}s = "
        f"{bare_tokens / bare_s:6.1f} tokens/s"
    )
    print(
        f"convoforge gateway  {gw_tokens:5d} completion tokens in {gw_s:6.1f}s = "
        f"{gw_tokens / gw_s:6.1f} tokens/s"
    )
    print(f"gateway/bare tokens/s ratio: {(gw_tokens / gw_s) / (bare_tokens / bare_s):.2f}")


if __name__ == "__main__":
    main()
