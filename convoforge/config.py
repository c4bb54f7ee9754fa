"""Load a RunConfig: defaults < TOML file < CONVOFORGE__* env vars < CLI --set overrides."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from schemas.config import RunConfig

ENV_PREFIX = "CONVOFORGE__"


class ConfigError(ValueError):
    """A configuration problem, phrased for the user: which field, which value, what to do."""


def _parse_value(raw: str) -> Any:
    # Values are TOML literals where they parse (numbers, booleans, lists); plain strings otherwise.
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _set_path(tree: dict, path: list[str], value: Any, origin: str) -> None:
    node = tree
    for key in path[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{origin}: '{'.'.join(path)}' goes through '{key}', not a section")
        node = child
    node[path[-1]] = value


def parse_overrides(pairs: Iterable[str], origin: str = "--set") -> dict:
    """Turn ["dialogues.rounds_min=3", ...] into a nested dict."""
    tree: dict = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{origin} {pair!r}: expected key.path=value")
        _set_path(tree, key.strip().split("."), _parse_value(raw.strip()), origin)
    return tree


def env_overrides(environ: Mapping[str, str] | None = None) -> dict:
    """CONVOFORGE__DIALOGUES__ROUNDS_MIN=3 -> {"dialogues": {"rounds_min": 3}}."""
    tree: dict = {}
    for name, raw in (os.environ if environ is None else environ).items():
        if name.startswith(ENV_PREFIX) and len(name) > len(ENV_PREFIX):
            path = name[len(ENV_PREFIX) :].lower().split("__")
            _set_path(tree, path, _parse_value(raw), f"env {name}")
    return tree


def merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def describe_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"invalid configuration ({source}):"]
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        value = e.get("input")
        shown = "" if isinstance(value, dict) else f" = {value!r}"
        lines.append(f"  {where}{shown}: {e['msg']}")
    return "\n".join(lines)


def load_config(
    path: str | Path | None = None,
    overrides: Iterable[str] = (),
    environ: Mapping[str, str] | None = None,
) -> RunConfig:
    data: dict = {}
    source = "defaults"
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {str(p)!r} does not exist")
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {str(p)!r} is not valid TOML: {e}") from None
        source = str(p)
    data = merge(data, env_overrides(environ))
    data = merge(data, parse_overrides(overrides))
    try:
        return RunConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(describe_validation_error(e, source)) from None
