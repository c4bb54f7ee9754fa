"""The fake OpenAI server must speak what the real API speaks: same shapes as recorded answers,
and parseable by the real openai SDK."""

import base64
import json
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from tests.doubles.fake_openai import Faults

HERE = Path(__file__).parent / "fixtures"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "openai"


def shape(obj):
    """The structure of a JSON value: keys and types, not values."""
    if isinstance(obj, dict):
        return {k: shape(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [shape(obj[0])] if obj else []
    return type(obj).__name__ if obj is not None else "null"


def covers(real, fake, path="$"):
    """Every key of the real shape is in the fake one with the same type."""
    if isinstance(real, dict):
        assert isinstance(fake, dict), f"{path}: expected an object"
        for k, v in real.items():
            if v == "null" or k in ("annotations",) or "details" in k:
                continue  # optional in the real API too
            assert k in fake, f"{path}.{k} missing from the fake's answer"
            covers(v, fake[k], f"{path}.{k}")
    elif isinstance(real, list) and real:
        covers(real[0], fake[0], f"{path}[0]")
    elif real != "null":
        num = {"int", "float"}
        assert real == fake or {real, fake} <= num, f"{path}: {fake} instead of {real}"


def recorded(name: str) -> dict:
    return json.loads((HERE / name).read_text())


def test_chat_completion_shape(fake):
    real = recorded("openai_chat_completion_200.json")
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi?"}]}
    ours = httpx.post(f"{fake.url}/chat/completions", json=body).json()
    covers(shape(real), shape(ours))
    assert ours["object"] == real["object"] == "chat.completion"


def test_embeddings_shape_and_base64(fake):
    real = recorded("openai_embeddings_200.json")
    ours = httpx.post(f"{fake.url}/embeddings", json={"model": "m", "input": ["a", "b"]}).json()
    covers(shape(real), shape(ours))
    client = openai.OpenAI(base_url=fake.url, api_key="x")
    vecs = client.embeddings.create(model="m", input=["a", "b"], encoding_format="base64")
    floats = np.frombuffer(base64.b64decode(vecs.data[0].embedding), dtype="<f4")
    assert len(vecs.data) == 2 and floats.shape == (64,) and np.abs(floats).max() <= 0.1


@pytest.mark.parametrize(("kind", "status", "name"), [
    ("429", 429, "openai_429.json"), ("500", 500, "openai_500.json"),
    ("400", 400, "openai_400_context.json"),
])  # fmt: skip
def test_error_bodies_and_headers(fake, kind, status, name):
    fake.faults = Faults(always=lambda body: kind, retry_after_s=1.5)
    r = httpx.post(f"{fake.url}/chat/completions", json={"model": "m", "messages": []})
    assert r.status_code == status
    covers(shape(recorded(name)), shape(r.json()))
    if kind == "429":
        assert r.headers["retry-after"] == "1.5"
        assert r.headers["x-ratelimit-remaining-requests"] == "0"


@pytest.mark.skipif(not SHARED.exists(), reason="the shared fixtures are not beside this clone")
def test_copies_match_the_shared_recordings():
    ex = json.loads(
        (
            SHARED
            / "cassette_exchanges"
            / "pydantic-ai__chat_completion_nonstream_200.exchange.json"
        ).read_text()
    )
    assert json.loads(ex["response"]["body"]) == recorded("openai_chat_completion_200.json")
