"""Every bad value of issue 11, through the CLI: exit 2 and one line naming the key or flag,
before any work starts (no run folder made)."""
import io
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import tiny_config_dict
from transduce import cli

BAD_CONFIG = [  # (override(s), the key the message must name)
    (["train.valid_every=0"], "train.valid_every"),
    (["train.log_every=0"], "train.log_every"),
    (["train.batch_sentences=0"], "train.batch_sentences"),
    (["train.batch_sentences=-4"], "train.batch_sentences"),
    (["search.batch_size=0"], "search.batch_size"),
    (["train.seed=-1"], "train.seed"),
    (["train.max_steps=-1"], "train.max_steps"),
    (["train.keep_last=-1"], "train.keep_last"),
    (["train.clip_norm=-1"], "train.clip_norm"),
    (["train.warmup_steps=-10"], "train.warmup_steps"),
    (["train.max_epochs=0"], "train.max_epochs"),
    (["train.patience=-1"], "train.patience"),
    (["search.beam=1", "search.nbest=9"], "search.nbest"),
    (["search.max_len_b=-5"], "search.max_len_b"),
    (["tokenizer.vocab_size=-1"], "tokenizer.vocab_size"),
    (["train.tf_k=0"], "train.tf_k"),
    (["train.precision=fp16"], "train.precision"),  # CPU: refused before the data loads
    (["model.init_range=1e38"], "model.init_range"),
    (["train.lr=1e6"], "train.lr"),
    (["train.max_nonfinite=0"], "train.max_nonfinite"),
]


@pytest.fixture(scope="module")
def tiny_yaml(tmp_path_factory) -> Path:
    """The tiny config as a YAML file (device cpu)."""
    path = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config_dict(train={"device": "cpu", "max_steps": 4})))
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_yaml) -> Path:
    """A model folder trained for 4 steps."""
    out = tmp_path_factory.mktemp("runs") / "tiny"
    assert cli.main(["train", str(tiny_yaml), "--out", str(out)]) == 0
    return out


def _one_line(capsys) -> str:
    """The only stderr line (asserted), without stdout output."""
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("transduce: error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("overrides, key", BAD_CONFIG, ids=[" ".join(o) for o, _ in BAD_CONFIG])
def test_a_bad_config_value_is_refused_up_front(tmp_path, tiny_yaml, capsys, overrides, key):
    out = tmp_path / "run"
    assert cli.main(["train", str(tiny_yaml), "--out", str(out), *overrides]) == 2
    assert key in _one_line(capsys)
    assert not out.exists()


BAD_FLAGS = [  # (translate arguments, stdin bytes, what the message must say)
    (["--max-len", "-1"], b"a b\n", "--max-len"),
    (["--beam", "100000"], b"a b\n", "--beam"),
    (["--plot-attention", "/proc/nope"], b"a b\n", "--plot-attention /proc/nope"),
    ([], b"a b\n\xff\xfe c\n", "<stdin>:2: invalid UTF-8"),
]


@pytest.mark.parametrize("argv, stdin, says", BAD_FLAGS, ids=[str(a) for a, _, _ in BAD_FLAGS])
def test_a_bad_translate_flag_or_input_is_refused(model_dir, monkeypatch, capsys, argv, stdin, says):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8"))
    assert cli.main(["translate", str(model_dir), *argv]) == 2
    assert says in _one_line(capsys)


def test_prepare_refuses_a_negative_max_len(capsys):
    with pytest.raises(SystemExit) as info:  # argparse: a usage line, then the error line
        cli.main(["prepare", "reverse", "--max-len", "-1"])
    assert info.value.code == 2 and "--max-len" in capsys.readouterr().err.strip().splitlines()[-1]


def test_the_process_exit_code_and_line(tmp_path, tiny_yaml):
    proc = subprocess.run([sys.executable, "-m", "transduce", "train", str(tiny_yaml), "--out",
                           str(tmp_path / "run"), "train.valid_every=0"], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "train.valid_every" in proc.stderr
