from pathlib import Path

import pytest

from convoforge.config import ConfigError, load_config, parse_overrides
from tests.conftest import ROOT


@pytest.mark.parametrize("name", ["tiny.toml", "small.toml"])
def test_examples_load(name):
    cfg = load_config(ROOT / "examples" / name)
    assert cfg.dialogues.rounds_min <= cfg.dialogues.rounds_max
    assert cfg.warehouse.root.startswith("data/")


def test_defaults_are_ultrachat_shaped():
    cfg = load_config()
    assert len(cfg.topics.meta_topics) == 30
    assert cfg.topics.meta_topics[0] == "Technology"
    assert (cfg.dialogues.rounds_min, cfg.dialogues.rounds_max) == (3, 7)
    assert cfg.questions.per_subtopic == 10


def test_precedence_file_env_cli(tmp_path: Path):
    f = tmp_path / "c.toml"
    f.write_text("seed = 1\n[dialogues]\nrounds_min = 2\nrounds_max = 4\n")
    env = {"CONVOFORGE__SEED": "2", "CONVOFORGE__DIALOGUES__ROUNDS_MAX": "5"}
    cfg = load_config(f, ["seed=3"], environ=env)
    assert cfg.seed == 3  # CLI beats env beats file
    assert cfg.dialogues.rounds_max == 5
    assert cfg.dialogues.rounds_min == 2


def test_bad_value_names_field_and_value(tmp_path: Path):
    f = tmp_path / "c.toml"
    f.write_text("[llm]\nconcurrency = 0\n")
    with pytest.raises(ConfigError) as e:
        load_config(f, environ={})
    assert "llm.concurrency" in str(e.value) and "= 0" in str(e.value)


def test_unknown_key_is_an_error():
    with pytest.raises(ConfigError, match="dialogues.roundz"):
        load_config(None, ["dialogues.roundz=3"], environ={})


def test_inverted_round_range():
    with pytest.raises(ConfigError, match=r"rounds_min \(5\) must be <= rounds_max \(2\)"):
        load_config(None, ["dialogues.rounds_min=5", "dialogues.rounds_max=2"], environ={})


def test_missing_and_broken_files(tmp_path: Path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("seed = = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_override_syntax():
    assert parse_overrides(["a.b=[1, 2]", "c=hello"]) == {"a": {"b": [1, 2]}, "c": "hello"}
    with pytest.raises(ConfigError, match="expected key.path=value"):
        parse_overrides(["novalue"])
