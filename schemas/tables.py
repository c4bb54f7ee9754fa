"""Arrow schema of every stage table. The warehouse checks each write against these."""

from __future__ import annotations

import pyarrow as pa

TURN = pa.struct([("role", pa.string()), ("content", pa.string())])

# Columns every row carries (run_id also names the hive partition the row is stored in).
_LINEAGE = [
    ("id", pa.string()),
    ("parent_id", pa.string()),
    ("run_id", pa.string()),
    ("created_at", pa.timestamp("us", tz="UTC")),
]
# Columns of rows an LLM made.
_LLM_MADE = [
    ("model", pa.string()),
    ("prompt_version", pa.string()),
    ("llm_call_id", pa.string()),
]

TOPICS = pa.schema(
    _LINEAGE
    + [
        ("level", pa.string()),  # "meta" | "subtopic"
        ("meta_topic", pa.string()),
        ("name", pa.string()),
        ("idx", pa.int32()),
    ]
    + _LLM_MADE
)

OPENERS = pa.schema(
    _LINEAGE
    + [
        ("sector", pa.string()),  # "world" | "writing" | "materials"
        ("kind", pa.string()),  # e.g. "question"
        ("meta_topic", pa.string()),
        ("subtopic", pa.string()),
        ("text", pa.string()),
        ("idx", pa.int32()),
    ]
    + _LLM_MADE
)

DIALOGUES = pa.schema(
    _LINEAGE
    + [
        ("sector", pa.string()),
        ("opener", pa.string()),
        ("rounds_target", pa.int32()),
        ("rounds", pa.int32()),
        ("turns", pa.list_(TURN)),
        ("status", pa.string()),  # "complete" | "failed" | "stopped"
        ("failure_reason", pa.string()),
        ("user_model", pa.string()),
        ("assistant_model", pa.string()),
        ("prompt_version", pa.string()),
        ("llm_call_ids", pa.list_(pa.string())),
    ]
)

# The ledger of every LLM request and, for status "ok", the response cache.
LLM_CALLS = pa.schema(
    [
        ("id", pa.string()),  # sha256 of the exact request: the cache key
        ("run_id", pa.string()),
        ("created_at", pa.timestamp("us", tz="UTC")),
        ("role", pa.string()),
        ("endpoint", pa.string()),  # base URL; never a key
        ("model", pa.string()),
        ("request", pa.string()),  # canonical JSON of model + messages + params + seed
        ("response", pa.string()),  # message content
        ("finish_reason", pa.string()),
        ("prompt_tokens", pa.int64()),
        ("completion_tokens", pa.int64()),
        ("latency_ms", pa.float64()),
        ("attempts", pa.int32()),
        ("cost_usd", pa.float64()),
        ("status", pa.string()),  # "ok" | "error"
        ("error", pa.string()),
    ]
)

RUNS = pa.schema(
    [
        ("id", pa.string()),
        ("run_id", pa.string()),
        ("created_at", pa.timestamp("us", tz="UTC")),
        ("status", pa.string()),  # "completed" | "stopped: budget" | "failed"
        ("config_json", pa.string()),
        ("summary_json", pa.string()),
        ("wall_s", pa.float64()),
    ]
)

TABLES: dict[str, pa.Schema] = {
    "topics": TOPICS,
    "openers": OPENERS,
    "dialogues": DIALOGUES,
    "llm_calls": LLM_CALLS,
    "runs": RUNS,
}
