"""The LLM gateway against the fake OpenAI server: cache, retries, faults, ledger, budget."""

import asyncio
import time

import pytest

from convoforge.llm import BudgetExhausted, Gateway, LLMError
from tests.conftest import fake_config
from tests.doubles.fake_openai import Faults
from warehouse.store import Warehouse

MSG = [{"role": "user", "content": "What is a river?"}]


def _gateway(tmp_path, fake, **over):
    cfg = fake_config(tmp_path, fake.url, **over)
    wh = Warehouse(cfg.warehouse.root)
    return cfg, wh, Gateway(cfg, wh, "run-1")


async def _ask(gw, n=1, **kw):
    try:
        return [await gw.complete("assistant", MSG, seed=i, **kw) for i in range(n)]
    finally:
        await gw.aclose()


def test_cache_pays_nothing_twice(tmp_path, fake):
    cfg, wh, gw = _gateway(tmp_path, fake)
    first = asyncio.run(_ask(gw, 3))
    assert fake.stats.answered == 3 and not any(c.cached for c in first)
    gw2 = Gateway(cfg, wh, "run-2")  # a new process would load the same ledger
    second = asyncio.run(_ask(gw2, 3))
    assert fake.stats.answered == 3, "a repeated request reached the endpoint"
    assert [c.text for c in second] == [c.text for c in first] and all(c.cached for c in second)
    assert gw2.stats.cache_hits == 3 and gw2.stats.calls == 0
    ledger = wh.query("SELECT * FROM llm_calls").to_pylist()
    assert len(ledger) == 3 and {r["status"] for r in ledger} == {"ok"}
    assert all(r["prompt_tokens"] > 0 and r["cost_usd"] > 0 for r in ledger)


def test_concurrent_identical_requests_share_one_call(tmp_path, fake):
    _, _, gw = _gateway(tmp_path, fake)

    async def go():
        res = await asyncio.gather(*[gw.complete("assistant", MSG, seed=1) for _ in range(5)])
        await gw.aclose()
        return res

    res = asyncio.run(go())
    assert fake.stats.answered == 1 and len({c.text for c in res}) == 1


@pytest.mark.parametrize("kind", ["429", "500", "timeout", "malformed", "truncated", "empty"])
def test_each_transient_fault_is_retried(tmp_path, fake, kind):
    seen = set()

    def once(body):  # the first attempt of each request fails with `kind`
        key = body["seed"]
        if key not in seen:
            seen.add(key)
            return kind
        return None

    fake.faults = Faults(always=once, hang_s=2.0, retry_after_s=0.3)
    _, wh, gw = _gateway(tmp_path, fake, llm={"timeout_s": 1.0})
    started = time.monotonic()
    (c,) = asyncio.run(_ask(gw, 1))
    assert c.text and fake.stats.faults[kind] == 1
    assert sum(gw.stats.retries.values()) == 1
    if kind == "429":
        assert time.monotonic() - started >= 0.3, "Retry-After was not honoured"
    row = wh.query("SELECT attempts, status FROM llm_calls").to_pylist()
    assert row == [{"attempts": 2, "status": "ok"}]


def test_permanent_failure_is_recorded_with_reason(tmp_path, fake):
    fake.faults = Faults(always=lambda body: "500")
    _, wh, gw = _gateway(tmp_path, fake, llm={"max_attempts": 3})
    with pytest.raises(LLMError, match="http 500 after 3 attempts"):
        asyncio.run(_ask(gw, 1))
    rows = wh.query("SELECT status, error, attempts FROM llm_calls").to_pylist()
    assert rows == [{"status": "error", "error": "http 500 after 3 attempts", "attempts": 3}]


@pytest.mark.parametrize(
    ("kind", "fatal", "reason"),
    [
        ("401", True, "http 401 invalid_api_key"),
        ("400", False, "http 400 context_length_exceeded"),
    ],
)
def test_client_errors_are_not_retried(tmp_path, fake, kind, fatal, reason):
    fake.faults = Faults(always=lambda body: kind)
    _, wh, gw = _gateway(tmp_path, fake)
    with pytest.raises(LLMError) as e:
        asyncio.run(_ask(gw, 1))
    assert e.value.fatal is fatal and e.value.reason.startswith(reason)
    assert fake.stats.requests == 1
    assert wh.query("SELECT status FROM llm_calls").to_pylist() == [{"status": "error"}]


def test_budget_stops_new_calls(tmp_path, fake):
    _, _, gw = _gateway(tmp_path, fake, llm={"budget_tokens": 1})
    with pytest.raises(BudgetExhausted, match="token budget 1"):
        asyncio.run(_ask(gw, 3))
    assert fake.stats.answered == 1


def test_api_key_never_reaches_the_warehouse(tmp_path, fake, monkeypatch):
    secret = "sk-test-PLANTED-9f8e7d6c5b4a"
    monkeypatch.setenv("CONVOFORGE_TEST_KEY", secret)
    _, wh, gw = _gateway(tmp_path, fake)
    asyncio.run(_ask(gw, 2))
    wh.ensure_catalog()
    for f in wh.root.rglob("*"):
        if f.is_file():
            assert secret.encode() not in f.read_bytes(), f"key leaked into {f}"
