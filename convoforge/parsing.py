"""Turn a model's answer into a list of items, whether it obeyed the JSON schema or not."""

from __future__ import annotations

import json
import re

LIST_SCHEMA_KEY = "items"

_BULLET = re.compile(r"^\s*(?:\(?\d{1,3}[.):\]]|[-*•·‣–]|#+)\s*")
_LABEL = re.compile(r"^(?:Q|A|Question|Subtopic|Topic)\s*\d*\s*[:.)-]\s+", re.I)
_WRAPPING_QUOTES = re.compile(r'^["“”\'`]+|["“”\'`;,]+$')


def list_schema(n: int, min_items: int = 1) -> dict:
    return {
        "type": "object",
        "properties": {
            LIST_SCHEMA_KEY: {
                "type": "array",
                "items": {"type": "string", "minLength": 3},
                "minItems": min(min_items, n),
                "maxItems": n,
            }
        },
        "required": [LIST_SCHEMA_KEY],
    }


def _from_json(text: str) -> list | None:
    start = min((i for i in (text.find("{"), text.find("[")) if i >= 0), default=-1)
    if start < 0:
        return None
    try:
        data, _ = json.JSONDecoder().raw_decode(text[start:])
    except json.JSONDecodeError:
        return None
    if isinstance(data, dict):
        data = data.get(
            LIST_SCHEMA_KEY, next((v for v in data.values() if isinstance(v, list)), None)
        )
    if isinstance(data, list):
        return [x for x in data if isinstance(x, str)]
    return None


def parse_list(text: str, limit: int | None = None, max_words: int = 0) -> list[str]:
    """Items from JSON ({"items": [...]} or [...]) or from numbered/bulleted/plain lines;
    cleaned, de-duplicated case-insensitively, in order; items over max_words are dropped
    (a model that explains instead of listing)."""
    items = _from_json(text)
    if items is None:
        items = []
        for line in text.splitlines():
            line = line.strip()
            if not line or line.endswith(":"):
                continue  # blank lines and headings like "Here are 5 subtopics:"
            items.append(_BULLET.sub("", line))
    seen, out = set(), []
    for item in items:
        item = _LABEL.sub("", re.sub(r"\s+", " ", item).strip())
        item = _WRAPPING_QUOTES.sub("", item).strip()
        key = item.casefold().rstrip(".?!")
        if len(item) < 3 or key in seen or (max_words and len(item.split()) > max_words):
            continue
        seen.add(key)
        out.append(item)
    return out[:limit] if limit else out
