"""bench/ablations.py: the variants are valid configs that change one thing each, the
schedules end where they say, and the table is built from the scores on disk (no training)."""
import json
from pathlib import Path

import pytest

from conftest import load_bench_script
from transduce import config
from transduce.schedules import teacher_forcing_ratio

ablations = load_bench_script("ablations")


def load(name, steps=2000):
    return config.load(config.recipe_path("multi30k"), ablations.overrides(name, steps, Path("m30k")))


def test_each_variant_is_a_valid_config_that_changes_what_it_names():
    base = load("recipe")
    recipe = config.load(config.recipe_path("multi30k"), ["data.path=m30k"])
    assert base.model == recipe.model and base.search == recipe.search
    assert base.train.max_steps == 2000 and base.train.valid_every == 1000 and base.data.path == "m30k"
    assert (base.model.input_feeding, base.train.label_smoothing, base.model.tie_embeddings) == (False, 0.1, False)
    expected = {
        "input-feeding": {("model", "input_feeding"): True},
        "bahdanau": {("model", "family"): "bahdanau"},
        "cho": {("model", "family"): "cho"},
        "sutskever": {("model", "family"): "sutskever"},
        "no-label-smoothing": {("train", "label_smoothing"): 0.0},
        "tied": {("model", "tie_embeddings"): True},
        "seed2": {("train", "seed"): 2},
        "seed3": {("train", "seed"): 3},
    }
    for name, changes in expected.items():
        cfg = load(name)
        for section in ("model", "train"):
            for key in vars(getattr(base, section)):
                value = getattr(getattr(cfg, section), key)
                assert value == changes.get((section, key), getattr(getattr(base, section), key)), (name, key)
    assert len({v[0] for v in ablations.VARIANTS}) == len(ablations.VARIANTS)
    assert ablations.names(3)[:3] == ["recipe", "seed2", "seed3"] and len(ablations.names(1)) == 11


def test_only_names_known_variants(capsys):
    assert ablations.parse_args(["--only", "seed5", "tied"]).only == ["seed5", "tied"]
    assert ablations.parse_args(["--steps", "300"]).runs == ablations.RUNS / "300"
    with pytest.raises(SystemExit):
        ablations.parse_args(["--only", "luong-feed"])
    assert "unknown variant 'luong-feed'" in capsys.readouterr().err


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


def cells(text):
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]
    return [r.split(" | ") for r in rows]


def test_table_from_the_scores_on_disk(tmp_path):
    score(tmp_path, "recipe", 30.0)
    score(tmp_path, "recipe", 28.5, greedy=True)
    score(tmp_path, "sutskever", 12.25, seconds=300.0)
    text = ablations.table(ablations.load_results(tmp_path), tmp_path)
    rows = cells(text)
    assert [r[0] for r in rows] == ["| recipe", "| recipe (greedy)", "| sutskever"]
    assert rows[0][2:6] == ["30.0", "50.0", "+0.0 vs baseline", "10.0 min"]
    assert rows[1][4] == "-1.5 vs its beam 5"
    assert rows[2][2:6] == ["12.2", "32.2", "-17.8 vs baseline", "5.0 min"]
    assert all(r[-1] == f"`python bench/ablations.py --only {r[0][2:].split()[0]} --steps 1500 "
                        f"--runs {tmp_path}` |" for r in rows)
    assert ablations.row_command("cho", 3000, ablations.RUNS / "3000") == \
        "python bench/ablations.py --only cho --steps 3000"
    assert "Run-to-run spread" not in text
    assert "1,500 updates" in text and "(Some CPU, bf16)" in text and "`nrefs:1|case:mixed|tok:13a`" in text
    # two more seeds of the baseline: differences are taken against their mean, the spread is printed
    score(tmp_path, "seed2", 27.0)
    score(tmp_path, "seed10", 30.0)
    text = ablations.table(ablations.load_results(tmp_path), tmp_path)
    rows = cells(text)
    assert [r[0] for r in rows] == ["| recipe", "| recipe (greedy)", "| seed2", "| seed10", "| sutskever"]
    assert rows[2][1] == "the baseline again with train.seed=2: the run-to-run spread"
    assert rows[2][4] == "-2.0 vs baseline mean of 3" and rows[4][4] == "-16.8 vs baseline mean of 3"
    assert "3 seeds of the baseline score 27.0 to 30.0 (mean 29.0, spread 3.0 BLEU)" in text


def test_missing_corpus_is_one_clear_error(tmp_path, capsys):
    assert ablations.main(["--data", str(tmp_path / "none"), "--runs", str(tmp_path)]) == 2
    assert f"no Multi30k corpus in {tmp_path / 'none'}" in capsys.readouterr().err


def test_report_trains_nothing_and_writes_the_section(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(ablations, "run_variant", lambda *a: pytest.fail("--report must not train"))
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\n## Other\n\nkept\n")
    args = ["--report", "--runs", str(tmp_path / "runs"), "--data", str(tmp_path / "none"),
            "--results", str(results), "--write"]
    assert ablations.main(args) == 1  # nothing scored yet: said, nothing written
    assert "no scored variant" in capsys.readouterr().err
    score(tmp_path / "runs", "recipe", 31.0)
    assert ablations.main(args) == 0
    text = results.read_text()
    assert "## Other\n\nkept\n" in text and "| recipe | " in text and "| 31.0 |" in text
