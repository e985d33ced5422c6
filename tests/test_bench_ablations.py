"""bench/ablations.py: the variants are valid configs that change one thing each, the
schedules end where they say, and the table is built from the scores on disk (no training)."""
import json
from pathlib import Path

import pytest

from conftest import load_bench_script
from transduce import config
from transduce.schedules import teacher_forcing_ratio

ablations = load_bench_script("ablations")


def load(name, steps=1500):
    return config.load(config.recipe_path("multi30k"), ablations.overrides(name, steps, Path("m30k")))


def test_each_variant_is_a_valid_config_that_changes_what_it_names():
    base = load("luong-feed")
    assert (base.model.hidden, base.model.enc_layers, base.model.dec_layers) == (256, 1, 1)
    assert base.train.max_steps == 1500 and base.data.path == "m30k"
    expected = {
        "luong-nofeed": {("model", "input_feeding"): False},
        "bahdanau": {("model", "family"): "bahdanau"},
        "cho": {("model", "family"): "cho"},
        "sutskever": {("model", "family"): "sutskever"},
        "label-smoothing": {("train", "label_smoothing"): 0.1},
        "tied": {("model", "tie_embeddings"): True},
    }
    for name, changes in expected.items():
        cfg = load(name)
        for (section, key), value in changes.items():
            assert getattr(getattr(cfg, section), key) == value, name
        same = [k for k in vars(base.model) if (("model", k) not in changes)]
        assert all(getattr(cfg.model, k) == getattr(base.model, k) for k in same), name
    assert len({v[0] for v in ablations.VARIANTS}) == len(ablations.VARIANTS)


@pytest.mark.parametrize("name", ["ss-linear", "ss-exponential", "ss-inverse-sigmoid", "ss-two-pass"])
@pytest.mark.parametrize("steps", [300, 1500])
def test_scheduled_sampling_goes_from_teacher_forcing_to_one_half(name, steps):
    cfg = load(name, steps).train
    assert teacher_forcing_ratio(cfg, 0) >= 0.98  # inverse sigmoid starts at k / (k + 1)
    assert teacher_forcing_ratio(cfg, steps) == pytest.approx(0.5, abs=0.01)
    assert cfg.tf_two_pass == (name == "ss-two-pass")


def score(tmp_path, name, bleu, greedy=False, seconds=600.0):
    path = ablations.score_file(name, tmp_path, greedy)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"bleu": bleu, "chrf": bleu + 20, "train_seconds": seconds, "steps": 1500,
                                "machine": "Some CPU", "precision": "bf16",
                                "bleu_signature": "nrefs:1|case:mixed|tok:13a"}), encoding="utf-8")


def test_table_from_the_scores_on_disk(tmp_path):
    score(tmp_path, "luong-feed", 30.0)
    score(tmp_path, "luong-feed", 28.5, greedy=True)
    score(tmp_path, "sutskever", 12.25, seconds=300.0)
    score(tmp_path, "ss-two-pass", 29.0)  # its baseline (luong-nofeed) is missing: no delta
    text = ablations.table(ablations.load_results(tmp_path), tmp_path)
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [r.split(" | ")[0] for r in rows] == ["| luong-feed", "| luong-feed (greedy)", "| sutskever",
                                                  "| ss-two-pass"]
    assert rows[0].split(" | ")[2:6] == ["30.0", "50.0", "", "10.0 min"]
    assert rows[1].split(" | ")[4] == "-1.5 vs beam 5"
    assert rows[2].split(" | ")[2:6] == ["12.2", "32.2", "-17.8 vs luong-feed", "5.0 min"]
    assert rows[3].split(" | ")[4] == ""
    assert all(r.endswith(f"`python bench/ablations.py --only {r.split(' | ')[0][2:].split()[0]} --steps 1500 "
                          f"--runs {tmp_path}` |") for r in rows)
    assert ablations.row_command("cho", 3000, ablations.RUNS) == "python bench/ablations.py --only cho --steps 3000"
    assert "Run-to-run spread" not in text
    score(tmp_path, "seed", 21.5)
    assert "another seed differs by 8.5 BLEU;" in ablations.table(ablations.load_results(tmp_path), tmp_path)
    assert "1,500 updates" in text and "(Some CPU, bf16)" in text and "`nrefs:1|case:mixed|tok:13a`" in text


def test_missing_corpus_is_one_clear_error(tmp_path, capsys):
    assert ablations.main(["--data", str(tmp_path / "none"), "--runs", str(tmp_path)]) == 2
    assert f"no Multi30k corpus in {tmp_path / 'none'}" in capsys.readouterr().err
