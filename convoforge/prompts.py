"""Load versioned prompt templates from the prompts/ package (one TOML file per prompt)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib.resources import files


@dataclass(frozen=True)
class Prompt:
    name: str
    version: str  # part of every downstream id: a changed prompt makes new rows
    system: str
    user: str

    def render(self, **values: object) -> tuple[str, str]:
        return self.system.format(**values), self.user.format(**values)


@cache
def load_prompt(name: str) -> Prompt:
    resource = files("prompts").joinpath(f"{name}.toml")
    if not resource.is_file():
        raise FileNotFoundError(f"no prompt named {name!r} in prompts/")
    data = tomllib.loads(resource.read_text(encoding="utf-8"))
    return Prompt(
        name=name,
        version=f"{name}@{data['version']}",
        system=data["system"].strip(),
        user=data.get("user", "").strip(),
    )
