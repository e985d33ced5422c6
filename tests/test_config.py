"""Config strictness: unknown keys, wrong types, bad values and overrides."""
from pathlib import Path

import pytest

from transduce import config
from transduce.errors import ConfigError

RECIPES = Path(__file__).resolve().parents[1] / "src" / "transduce" / "recipes"


def test_defaults_are_valid():
    cfg = config.load(None)
    assert cfg.model.family == "luong"
    assert cfg.data.corpus == "cmudict"


@pytest.mark.parametrize("recipe", sorted(p.name for p in RECIPES.glob("*.yaml")))
def test_every_shipped_recipe_loads(recipe):
    cfg = config.load(RECIPES / recipe)
    assert isinstance(cfg, config.Config)


def test_overrides_are_typed():
    cfg = config.load(None, ["train.lr=3e-4", "model.cell=gru", "model.bidirectional=false",
                             "train.patience=3", "data.train=a.tsv", "train.clip_norm=null"])
    assert cfg.train.lr == pytest.approx(3e-4)
    assert cfg.model.cell == "gru"
    assert cfg.model.bidirectional is False
    assert cfg.train.patience == 3
    assert cfg.data.train == ["a.tsv"]
    assert cfg.train.clip_norm is None


def test_int_widens_to_float_but_not_back():
    assert config.load(None, ["train.lr=1"]).train.lr == 1.0
    with pytest.raises(ConfigError, match=r"'train.max_steps': expected int, got 1.5"):
        config.load(None, ["train.max_steps=1.5"])


@pytest.mark.parametrize("override, message", [
    ("train.lrr=1", "unknown config key 'train.lrr'"),
    ("trian.lr=1", "unknown config section 'trian'"),
    ("model.cell=tanh", "'model.cell': 'tanh' is not one of 'lstm' | 'gru' | 'rnn'"),
    ("model.bidirectional=3", "'model.bidirectional': expected bool"),
    ("train.teacher_forcing=1.5", "'train.teacher_forcing': must be in [0, 1], got 1.5"),
    ("model.share_embeddings=true", "'model.share_embeddings': needs tokenizer.joint"),
    ("lr=1", "key must be section.key"),
    ("train.lr", "must look like section.key=value"),
])
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError) as info:
        config.load(None, [override])
    assert message in str(info.value)


def test_unknown_key_in_yaml_names_file_and_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  hiden: 256\n")
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert str(path) in str(info.value) and "'model.hiden'" in str(info.value)


def test_yaml_syntax_error_names_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("model:\n  hidden: 256\n  cell: [lstm\n")
    with pytest.raises(ConfigError, match=r"broken.yaml:\d+: invalid YAML"):
        config.load(path)


def test_section_must_be_mapping(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: 3\n")
    with pytest.raises(ConfigError, match="section 'model' must be a mapping"):
        config.load(path)


def test_round_trip_through_yaml(tmp_path):
    cfg = config.load(None, ["model.hidden=128", "data.toy_len=[2, 5]"])
    cfg.save(tmp_path / "config.yaml")
    again = config.load(tmp_path / "config.yaml")
    assert again == cfg


def test_errors_name_the_file_or_the_override(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("model:\n  hidden: 32\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  hiden: 32\n")
    with pytest.raises(ConfigError) as info:
        config.load(good, ["model.hiden=3"])
    assert str(info.value).startswith("command-line override: unknown config key 'model.hiden'")
    with pytest.raises(ConfigError) as info:
        config.load(bad, ["train.lr=0.1"])
    assert str(info.value).startswith(f"{bad}: unknown config key 'model.hiden'")
    with pytest.raises(ConfigError, match="command-line override: config key 'train.lr': expected float"):
        config.load(good, ["train.lr=abc"])
    # an override may repair a bad value of the file
    (tmp_path / "fixable.yaml").write_text("model:\n  hidden: -1\n")
    assert config.load(tmp_path / "fixable.yaml", ["model.hidden=16"]).model.hidden == 16
