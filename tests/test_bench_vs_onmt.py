"""bench/vs_onmt.py: the pure parts (checkpoint choice, OpenNMT-py config, table); no training."""
import argparse

import pytest
import yaml

from conftest import load_bench_script

vs = load_bench_script("vs_onmt")
speed = vs.speed


def test_newest_checkpoint_by_step_not_by_name(tmp_path):
    for step in (900, 1000, 100):
        (tmp_path / f"model_step_{step}.pt").write_bytes(b"")
    (tmp_path / "model_step_x.pt").write_bytes(b"")
    assert vs.newest_checkpoint(tmp_path) == (1000, tmp_path / "model_step_1000.pt")
    with pytest.raises(RuntimeError, match="saved no checkpoint"):
        vs.newest_checkpoint(tmp_path / "empty")


@pytest.mark.skipif(not speed.ONMT_YAML.is_file(), reason="needs ../shared/peers/onmt-rnn.yaml")
def test_onmt_config_saves_often_and_runs_until_stopped(tmp_path):
    corpus = speed.Corpus(tmp_path, 29000, 7794, 13.0, 1.0, 1000)
    bench = speed.Bench(argparse.Namespace(emb=256, hidden=512), tmp_path, corpus, tmp_path)
    cfg = yaml.safe_load(vs.onmt_yaml(bench, tmp_path / "onmt", 100).read_text())
    assert (cfg["save_checkpoint_steps"], cfg["keep_checkpoint"], cfg["train_steps"]) == (100, 2, 10**6)
    assert (cfg["layers"], cfg["hidden_size"], cfg["input_feed"], cfg["rnn_type"]) == (2, 512, 1, "LSTM")
    assert cfg["data"]["corpus_1"]["path_src"] == str(tmp_path / "train.de")


def test_table_rows_and_command():
    td = {"steps": 2345, "bleu": 38.06, "chrf": 59.0, "precision": "bf16", "machine": "Some CPU",
          "bleu_signature": "nrefs:1|case:mixed"}
    onmt = {"steps": 1200, "bleu": 33.94, "chrf": 55.55, "sentences": 1000}
    text = vs.table(onmt, td, 25.0, "python bench/vs_onmt.py --minutes 25")
    assert text.startswith(vs.HEADING)
    assert "| OpenNMT-py 3.5.1 | 2x512 biLSTM" in text and "| 1,200 | 33.9 | 55.5 | fp32 |" in text
    assert "| transduce | the `multi30k` recipe" in text and "| 2,345 | 38.1 | 59.0 | bf16 |" in text
    assert "(Some CPU, 2 cores)" in text and "for 25 minutes" in text and "(1,000 sentences)" in text
    assert "Command: `python bench/vs_onmt.py --minutes 25`." in text
