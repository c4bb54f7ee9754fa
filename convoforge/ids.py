"""Deterministic ids: the same parent, kind, index and prompt version always give the same id."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from typing import Any


def row_id(parent_id: str | None, kind: str, index: int | str, prompt_version: str = "") -> str:
    key = f"{parent_id or ''}\x1f{kind}\x1f{index}\x1f{prompt_version}"
    return hashlib.sha256(key.encode()).hexdigest()[:20]


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def request_hash(request: dict) -> str:
    return hashlib.sha256(canonical_json(request).encode()).hexdigest()


def derive_seed(seed: int, *parts: object) -> int:
    """A 31-bit seed for one item, stable across runs and machines."""
    h = hashlib.sha256(("\x1f".join([str(seed), *map(str, parts)])).encode()).digest()
    return int.from_bytes(h[:4], "big") & 0x7FFFFFFF


def new_run_id() -> str:
    now = dt.datetime.now(dt.UTC)
    return f"{now:%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
