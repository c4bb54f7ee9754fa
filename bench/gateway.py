"""Gateway overhead against the fake OpenAI server with a fixed latency per request.

Prints requests/s against the ideal (concurrency / latency) and against a bare openai SDK
fan-out in the same process (the baseline), CPU ms per call, and the cost of a cache hit.
Usage: python -m bench.gateway [--requests 400] [--concurrency 16] [--latency 0.05]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time

import openai

from convoforge.llm import Gateway
from schemas.config import RunConfig
from tests.doubles.fake_openai import FakeOpenAI
from warehouse.store import Warehouse


def _messages(i: int) -> list[dict]:
    return [{"role": "user", "content": f"Question number {i}: why is the sky blue?"}]


async def bare_sdk(url: str, n: int, conc: int) -> None:
    client = openai.AsyncOpenAI(base_url=url, api_key="x", max_retries=0)
    sem = asyncio.Semaphore(conc)

    async def one(i: int) -> None:
        async with sem:
            await client.chat.completions.create(model="m", messages=_messages(i), seed=i)

    await asyncio.gather(*(one(i) for i in range(n)))
    await client.close()


async def through_gateway(gw: Gateway, n: int) -> None:
    try:
        await asyncio.gather(*(gw.complete("assistant", _messages(i), seed=i) for i in range(n)))
    finally:
        await gw.aclose()


def timed(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--latency", type=float, default=0.05)
    a = ap.parse_args()
    with FakeOpenAI(latency_s=a.latency) as fake, tempfile.TemporaryDirectory() as tmp:
        cfg = RunConfig.model_validate(
            {
                "llm": {
                    "concurrency": a.concurrency,
                    "assistant": {"base_url": fake.url, "model": "m"},
                },
                "warehouse": {"root": tmp},
            }
        )
        wh = Warehouse(tmp)
        base_wall, base_cpu = timed(
            lambda: asyncio.run(bare_sdk(fake.url, a.requests, a.concurrency))
        )
        gw_wall, gw_cpu = timed(
            lambda: asyncio.run(through_gateway(Gateway(cfg, wh, "b"), a.requests))
        )
        hit_wall, hit_cpu = timed(
            lambda: asyncio.run(through_gateway(Gateway(cfg, wh, "c"), a.requests))
        )
    ideal = a.concurrency / a.latency
    print(
        f"requests={a.requests} concurrency={a.concurrency} latency={a.latency * 1000:.0f}ms "
        f"ideal={ideal:.0f} req/s"
    )
    for name, wall, cpu, vs_ideal in (
        ("bare openai SDK", base_wall, base_cpu, True),
        ("convoforge gateway", gw_wall, gw_cpu, True),
        ("gateway, all cache hits", hit_wall, hit_cpu, False),  # no request leaves the process
    ):
        share = f"{a.requests / wall / ideal:6.1%} of ideal" if vs_ideal else "   (no network)"
        print(
            f"{name:26s} {a.requests / wall:8.1f} req/s  {share}  "
            f"cpu {cpu / a.requests * 1000:6.2f} ms/call  wall {wall:6.2f}s"
        )
    print(
        f"gateway/bare throughput ratio: {base_wall / gw_wall:.2f}; "
        f"cpu ratio {gw_cpu / base_cpu:.2f}"
    )


if __name__ == "__main__":
    main()
