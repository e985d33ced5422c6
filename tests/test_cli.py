"""The command line end to end, on the toy recipe, in a temporary folder."""
import io
import json
import re
import subprocess
import sys
import warnings

import pytest
import torch

from conftest import TOY_OVERRIDES
from transduce import config
from transduce.cli import main


def run(capsys, argv, stdin=None, monkeypatch=None):
    """Run the CLI with ``stdin`` (str or bytes) as standard input; -> (code, out, err)."""
    if stdin is not None:
        data = stdin.encode("utf-8") if isinstance(stdin, str) else stdin
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_help_runs_as_a_module():
    proc = subprocess.run([sys.executable, "-m", "transduce", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    for verb in ("prepare", "train", "translate", "evaluate", "serve", "demo", "plot"):
        assert verb in proc.stdout


def test_no_command_prints_help_and_exits_2(capsys):
    code, out, _ = run(capsys, [])
    assert code == 2 and "COMMAND" in out


@pytest.mark.parametrize("argv, message", [
    (["train", "no-such-recipe"], "config file not found: no-such-recipe"),
    (["train", "toy", "model.hiden=3"], "unknown config key 'model.hiden'"),
    (["train", "toy", "train.lr=abc"], "'train.lr': expected float"),
    (["translate", "/nonexistent/model"], "/nonexistent/model"),
    (["train", "--resume", "/nonexistent/run"], "cannot resume"),
])
def test_user_errors_exit_2_with_one_line(capsys, argv, message):
    code, _, err = run(capsys, argv)
    assert code == 2
    assert err.startswith("transduce: error: ")
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_prepare_reports_mismatch(capsys, tmp_path):
    (tmp_path / "a.txt").write_text("x\ny\nz\n")
    (tmp_path / "b.txt").write_text("x\ny\n")
    code, _, err = run(capsys, ["prepare", str(tmp_path / "a.txt"), str(tmp_path / "b.txt")])
    assert code == 2 and "a.txt" in err and "3" in err and "2" in err


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory, toy_overrides):
    out = tmp_path_factory.mktemp("runs") / "toy"
    assert main(["train", "toy", *toy_overrides, "--out", str(out)]) == 0
    return out


def test_train_writes_a_model_folder(toy_run):
    for name in ("config.yaml", "model.safetensors", "log.jsonl"):
        assert (toy_run / name).is_file(), name
    lines = [json.loads(line) for line in (toy_run / "log.jsonl").read_text().splitlines()]
    assert any(rec["split"] == "valid" for rec in lines)


def test_translate_stdin_to_stdout_keeps_lines(capsys, monkeypatch, toy_run):
    code, out, _ = run(capsys, ["translate", str(toy_run), "--beam", "2"], stdin="1 2 3\n\n4 5 6 7\n",
                       monkeypatch=monkeypatch)
    assert code == 0
    lines = out.split("\n")
    assert len(lines) == 4 and lines[1] == "" and lines[3] == ""  # empty input -> empty output


def test_translate_jsonl_nbest_and_attention(capsys, monkeypatch, toy_run, tmp_path):
    code, out, _ = run(capsys, ["translate", str(toy_run), "--jsonl", "--beam", "3", "--nbest", "2",
                                "--attention", "--plot-attention", str(tmp_path / "att")],
                       stdin="1 2 3\n", monkeypatch=monkeypatch)
    assert code == 0
    rec = json.loads(out)
    assert len(rec["nbest"]) == 2 and rec["nbest"][0]["score"] >= rec["nbest"][1]["score"]
    assert len(rec["attention"]) == len(rec["tokens"])
    assert (tmp_path / "att" / "00000.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_nbest_text_gives_n_lines_per_input_with_its_index(capsys, monkeypatch, toy_run):
    code, out, _ = run(capsys, ["translate", str(toy_run), "--beam", "3", "--nbest", "3"],
                       stdin="1 2 3\n\n4 5\n", monkeypatch=monkeypatch)
    assert code == 0
    rows = [line.split("\t") for line in out.rstrip("\n").split("\n")]
    assert [r[0] for r in rows] == ["0"] * 3 + ["1"] * 3 + ["2"] * 3  # the empty line keeps its 3
    assert all(len(r) == 3 and float(r[2]) <= 0.0 for r in rows)
    assert [r[1] for r in rows[3:6]] == ["", "", ""]


class _TypedLines:
    """A terminal stdin: records what had been printed before each line was read."""

    def __init__(self, lines, capsys):
        self.lines, self.capsys, self.seen = lines, capsys, []

    def isatty(self):
        return True

    @property
    def buffer(self):
        for line in self.lines:
            self.seen.append(self.capsys.readouterr().out)
            yield line


def test_lines_typed_at_a_terminal_are_answered_one_by_one(capsys, monkeypatch, toy_run):
    typed = _TypedLines([b"1 2 3\n", b"4 5\n", b"6\n"], capsys)
    monkeypatch.setattr(sys, "stdin", typed)
    assert main(["translate", str(toy_run), "--greedy"]) == 0
    assert typed.seen[0] == ""
    assert typed.seen[1].count("\n") == 1 and typed.seen[2].count("\n") == 1  # answered before the next


@pytest.mark.parametrize("argv, stdin, message", [
    (["--attention"], "1 2\n", "--attention needs --jsonl"),
    (["--plot-attention", "/proc/nope/x"], "1 2\n", "--plot-attention /proc/nope/x: cannot create"),
    (["--max-len", "-1"], "1 2\n", "--max-len: must be in [1, 4096], got -1"),
    (["--beam", "100000"], "1 2\n", "--beam: must be in [1, 256], got 100000"),
    (["--beam", "2", "--nbest", "3"], "1 2\n", "--nbest: must be at most beam (2)"),
    (["--top-p", "0"], "1 2\n", "--top-p: must be in (0, 1]"),
    ([], b"1 2\n\xff\xfe\n", "<stdin>:2: invalid UTF-8"),
])
def test_bad_translate_input_exits_2_naming_it(capsys, monkeypatch, toy_run, argv, stdin, message):
    code, out, err = run(capsys, ["translate", str(toy_run), *argv], stdin=stdin, monkeypatch=monkeypatch)
    assert code == 2 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_prepare_refuses_a_negative_max_len(capsys):
    with pytest.raises(SystemExit) as info:
        main(["prepare", "reverse", "--max-len", "-1"])
    assert info.value.code == 2 and "must be an integer >= 1" in capsys.readouterr().err


def test_evaluate_json(capsys, toy_run, tmp_path):
    (tmp_path / "src.txt").write_text("1 2 3\n4 5\n")
    (tmp_path / "ref.txt").write_text("3 2 1\n5 4\n")
    code, out, _ = run(capsys, ["evaluate", str(toy_run), "--source", str(tmp_path / "src.txt"),
                                "--reference", str(tmp_path / "ref.txt"), "--metrics", "bleu,wer,per",
                                "--json"])
    assert code == 0
    result = json.loads(out)
    assert {"bleu", "wer", "per"} <= set(result)
    assert 0.0 <= result["wer"] <= 100.0 * 5


def test_evaluate_mismatched_files_is_a_user_error(capsys, toy_run, tmp_path):
    (tmp_path / "src.txt").write_text("1 2 3\n4 5\n")
    (tmp_path / "ref.txt").write_text("3 2 1\n")
    code, _, err = run(capsys, ["evaluate", str(toy_run), "--source", str(tmp_path / "src.txt"),
                                "--reference", str(tmp_path / "ref.txt")])
    assert code == 2 and "src.txt has 2 lines" in err


def test_evaluate_split_scores_the_corpus_of_the_models_config(capsys, toy_run, tmp_path):
    from transduce.checkpoint import load_config
    from transduce.corpora import load_splits

    test = load_splits(load_config(toy_run).data).test
    hyps = tmp_path / "hyps.txt"
    code, out, _ = run(capsys, ["evaluate", str(toy_run), "--split", "test", "--greedy",
                                "--metrics", "exact_match,ser", "--json", "--output", str(hyps)])
    assert code == 0
    result = json.loads(out)
    lines = hyps.read_text().splitlines()
    assert result["sentences"] == len(test) == len(lines) > 0
    matches = sum(h.split() == t.split() for h, (_, t) in zip(lines, test))
    assert result["exact_match"] == pytest.approx(100.0 * matches / len(test))
    assert result["exact_match"] + result["ser"] == pytest.approx(100.0)


@pytest.mark.parametrize("extra, message", [
    ([], "needs --source and --reference files, or --split"),
    (["--split", "test", "--source", "x.txt"], "either --split or --source"),
])
def test_evaluate_needs_one_kind_of_input(capsys, toy_run, extra, message):
    code, _, err = run(capsys, ["evaluate", str(toy_run), *extra])
    assert code == 2 and message in err


def test_plot_writes_pngs(capsys, toy_run):
    code, out, _ = run(capsys, ["plot", str(toy_run)])
    assert code == 0
    paths = out.split()
    assert paths and all(p.endswith(".png") for p in paths)


@pytest.mark.slow
def test_demo_quick_runs_end_to_end(capsys, tmp_path):
    out = tmp_path / "demo"
    code, stdout, _ = run(capsys, ["demo", "--quick", "--out", str(out), "train.progress=false",
                                   "train.tensorboard=false", "search.beam=2"])
    assert code == 0
    scores = json.loads((out / "test_scores.json").read_text())
    assert scores["words"] == 300
    assert 0.0 <= scores["word_error_rate"] <= 100.0 and scores["phoneme_error_rate"] >= 0.0
    assert "hello" in stdout and "word error rate" in stdout
    assert "(60 steps, 2 worker processes)" in stdout  # the recipe's two CPU workers
    assert (out / "attention.png").read_bytes()[:4] == b"\x89PNG"
    took = re.search(r"^transduce demo took (\d+\.\d) minutes \((\d+\.\d) training, (\d+\.\d) testing\); "
                     r"the full g2p recipe .* reaches test WER \d+\.\d%, PER \d+\.\d%\.$", stdout, re.M)
    assert took and abs(float(took[1]) - float(took[2]) - float(took[3])) <= 0.11
    assert scores["minutes"] == pytest.approx(float(took[1]), abs=0.051)


def _small_run(tmp_path, name, steps=4, extra=()):
    out = tmp_path / name
    argv = ["train", "toy", *TOY_OVERRIDES, f"train.max_steps={steps}", f"train.valid_every={steps}",
            "data.toy_size=100", "--out", str(out), *extra]
    assert main(argv) == 0
    return out


def _last_step(run):
    return max(json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines())


def test_resume_applies_train_overrides_given_without_config(capsys, tmp_path):
    folder = _small_run(tmp_path, "r")
    assert main(["train", "--resume", str(folder), "train.max_steps=6", "train.valid_every=6"]) == 0
    assert _last_step(folder) == 6


@pytest.mark.parametrize("argv_tail, message", [
    (["model.hidden=8"], "cannot change model.hidden when resuming"),
    (["data.toy_size=50"], "cannot change data.toy_size when resuming"),
    (["numbers"], "numbers does not match the run being resumed"),
    (["--out", "elsewhere"], "a run resumes in its own folder"),
])
def test_resume_refuses_what_would_change_the_model_or_data(capsys, tmp_path, argv_tail, message):
    folder = _small_run(tmp_path, "r")
    before = (folder / "log.jsonl").read_text()
    code, _, err = run(capsys, ["train", "--resume", str(folder), *argv_tail])
    assert code == 2 and message in err
    assert (folder / "log.jsonl").read_text() == before  # nothing trained


def test_own_data_without_yaml_is_sized_for_it(capsys, tmp_path):
    tsv = tmp_path / "names.tsv"
    words = ["anna", "bob", "carla", "dmitri", "eve", "fatima", "gustav", "hana", "ivan", "jo"] * 6
    tsv.write_text("".join(f"{w}\t{w.upper()}\n" for w in words), encoding="utf-8")
    code, _, err = run(capsys, ["train", "--train", str(tsv), "train.max_steps=3", "train.valid_every=3",
                                "train.progress=false", "train.tensorboard=false",
                                "--out", str(tmp_path / "own")])
    assert code == 0
    assert "60 training pairs" in err and "tokenizer.src=char tokenizer.tgt=char" in err
    assert "validation pairs were set aside from the training data (no data.valid given)" in err
    cfg = config.load(tmp_path / "own" / "config.yaml")
    assert cfg.data.train == [str(tsv)] and cfg.data.corpus is None
    assert cfg.train.max_steps == 3  # the user's override wins over the sized 500
    assert cfg.train.early_stop_metric == "exact_match" and cfg.model.cell == "gru"


def test_own_data_and_a_config_together_are_refused(capsys, tmp_path):
    code, _, err = run(capsys, ["train", "toy", "--train", "x.tsv"])
    assert code == 2 and "either a CONFIG or --train" in err


def test_a_run_stopped_before_its_first_validation_translates_from_its_checkpoint(capsys, monkeypatch,
                                                                                 tmp_path):
    folder = _small_run(tmp_path, "r")
    for name in ("model.safetensors", "meta.json"):  # as after Ctrl-C before any validation
        (folder / name).unlink()
    capsys.readouterr()
    with pytest.warns(UserWarning, match="has no best model yet") as caught:
        code, out, err = run(capsys, ["translate", str(folder), "--greedy"], stdin="1 2 3\n",
                             monkeypatch=monkeypatch)
    assert code == 0 and out.strip()
    assert str(folder / "checkpoints" / "step-4") in str(caught[0].message)
    shown = warnings.formatwarning(caught[0].message, UserWarning, "x.py", 1)  # as main() set it
    assert shown == f"transduce: warning: {caught[0].message}\n"


def test_score_gives_the_models_log_probability_of_each_pair(capsys, toy_run, tmp_path):
    from transduce.translator import Translator

    (tmp_path / "src.txt").write_text("1 2 3\n4 5\n", encoding="utf-8")
    (tmp_path / "tgt.txt").write_text("3 2 1\n4 5\n", encoding="utf-8")
    code, out, _ = run(capsys, ["score", str(toy_run), "--source", str(tmp_path / "src.txt"),
                                "--target", str(tmp_path / "tgt.txt"), "--jsonl"])
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["tokens"] for r in rows] == [4, 3]  # tokens + EOS
    tr = Translator.from_dir(toy_run)
    total = tr.nll(["1 2 3", "4 5"], ["3 2 1", "4 5"])
    assert sum(r["logprob"] for r in rows) == pytest.approx(-total.nll_sum, rel=1e-5)
    greedy = tr.translate(["1 2 3"], method="greedy")[0]  # teacher-forcing its own output
    assert tr.score(["1 2 3"], [greedy.text])[0][0] == pytest.approx(greedy.logprob, abs=1e-4)


def test_average_last_n_picks_the_newest_step_checkpoints(capsys, tmp_path):
    folder = _small_run(tmp_path, "r", steps=6, extra=["train.valid_every=2", "train.keep_last=3"])
    code, out, _ = run(capsys, ["average", str(folder), "--last", "2", "--out", str(tmp_path / "avg")])
    assert code == 0 and "step-4" in out and "step-6" in out and "step-2" not in out
    assert (tmp_path / "avg" / "model.safetensors").is_file()
    code, _, err = run(capsys, ["average", str(folder), "--last", "5", "--out", str(tmp_path / "x")])
    assert code == 2 and "keeps 3 step checkpoint(s), fewer than --last 5" in err


def test_threads_flag_and_environment(capsys, monkeypatch):
    import torch

    before = torch.get_num_threads()
    try:
        assert main(["prepare", "reverse", "--threads", "2"]) == 0
        assert torch.get_num_threads() == 2
        monkeypatch.setenv("TRANSDUCE_THREADS", "1")
        assert main(["prepare", "reverse"]) == 0
        assert torch.get_num_threads() == 1
        monkeypatch.setenv("TRANSDUCE_THREADS", "0")
        code, _, err = run(capsys, ["prepare", "reverse"])
        assert code == 2 and "TRANSDUCE_THREADS must be an integer >= 1" in err
    finally:
        torch.set_num_threads(before)


def test_fine_tuning_starts_from_the_model_folder(capsys, tmp_path):
    from transduce.checkpoint import read_tensors

    base = _small_run(tmp_path, "base")
    capsys.readouterr()
    tuned = tmp_path / "tuned"
    code = main(["train", "toy", *TOY_OVERRIDES, "data.toy_vocab=12", "data.toy_size=100",
                 "train.max_steps=2", "train.valid_every=2", "train.lr=1e-9", "train.min_lr=0", "model.hidden=32",
                 "--init-from", str(base), "--out", str(tuned)])
    err = capsys.readouterr().err
    assert code == 0
    assert "its model.* settings are kept (model.hidden (32 vs 64)" in err
    assert f"fine-tuning from {base}" in err
    assert re.search(r"[1-9][\d.]*% of the training source tokens .* are not in the vocabulary", err)
    assert (tuned / "src.vocab.json").read_text() == (base / "src.vocab.json").read_text()
    a, b = read_tensors(base / "model.safetensors"), read_tensors(tuned / "model.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)  # lr 1e-9: still the base weights
    steps = [json.loads(line)["step"] for line in (tuned / "log.jsonl").read_text().splitlines()]
    assert max(steps) == 2  # a fresh step count


def test_evaluate_perplexity_only_when_asked(capsys, toy_run, tmp_path):
    (tmp_path / "src.txt").write_text("1 2 3\n4 5\n")
    (tmp_path / "ref.txt").write_text("3 2 1\n5 4\n")
    base = ["evaluate", str(toy_run), "--source", str(tmp_path / "src.txt"), "--reference",
            str(tmp_path / "ref.txt"), "--json"]
    code, out, _ = run(capsys, base + ["--metrics", "ppl"])
    result = json.loads(out)
    assert code == 0 and result["ppl"] >= 1.0 and result["n_tokens"] == 7 and "bleu" not in result
    code, out, _ = run(capsys, base)
    assert code == 0 and "ppl" not in json.loads(out) and "bleu" in json.loads(out)
    code, _, err = run(capsys, base + ["--metrics", "bleu,perplexity"])
    assert code == 2 and "unknown metric(s) perplexity" in err and "ppl" in err
