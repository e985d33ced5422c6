"""bench/speed.py: the pure parts (FLOPs, log parsers, tables); no OpenNMT-py, no training."""
import json
from pathlib import Path

import pytest

from conftest import load_bench_script
from transduce.config import ModelConfig
from transduce.model import Seq2Seq


# Lines captured from the smoke run (bench/speed.py --smoke) of each tool.
ONMT_TRAIN_LOG = """\
[2026-11-26 13:57:19,729 INFO]  * src vocab size = 7794
[2026-11-26 13:57:19,729 INFO]  * tgt vocab size = 7794
[2026-11-26 13:57:20,572 INFO] Step  2/    8; acc: 0.0; ppl: 7824.8; xent: 9.0; lr: 0.00100; \
sents:     128; bsz:  960/1018/64; 2284/2423 tok/s;      1 sec;
[2026-11-26 13:57:20,923 INFO] Step  4/    8; acc: 3.6; ppl: 7377.3; xent: 8.9; lr: 0.00100; \
sents:     128; bsz:  480/ 564/64; 2734/3210 tok/s;      1 sec;
[2026-11-26 13:57:21,200 INFO] Saving checkpoint runs/onmt-nofeed-fp32/model_step_8.pt
"""
TRANSDUCE_LOG = """\
{"step": 0, "split": "data", "train_pairs": 29000, "dropped_too_long": 0, "valid_pairs": 16, \
"valid_carved": false, "unknown_src_pct": 0.0, "unknown_tgt_pct": 0.0, "time": 0.0}
{"step": 0, "split": "train", "tf_ratio": 1.0, "time": 0.0}
{"step": 2, "split": "train", "epoch": 0, "loss": 8.958514519457546, "ppl": 7773.801050690529, \
"accuracy": 4.122990915443745, "lr": 0.001, "tf_ratio": 1.0, "tok_per_s": 2505.183962644679, \
"grad_norm": 0.2111159861087799, "time": 0.571}
{"step": 4, "split": "train", "epoch": 0, "loss": 8.940921776582183, "ppl": 7638.234557390827, \
"accuracy": 10.377924415116976, "lr": 0.001, "tf_ratio": 1.0, "tok_per_s": 3011.374599545728, \
"grad_norm": 0.28112858533859253, "time": 1.125}
{"step": 4, "split": "valid", "loss": 8.9, "ppl": 7000.0, "bleu": 0.0, "time": 2.0}
"""
ONMT_TRANSLATE_LOG = """\
[2026-11-26 13:58:17,923 INFO] PRED SCORE: -1.9933, PRED PPL: 7.34 NB SENTENCES: 24
[2026-11-26 13:58:17,923 INFO] Total translation time (s): 0.0
[2026-11-26 13:58:17,923 INFO] Average translation time (ms): 1.3
[2026-11-26 13:58:17,923 INFO] Tokens per second: 0.0
"""


@pytest.fixture(scope="module")
def speed():
    return load_bench_script("speed")


def test_flops_of_a_small_config_by_hand(speed):
    arch = speed.Arch(vocab=10, emb=2, hidden=4, layers=2, feed=True)
    # encoder, 2 units a direction: layer 1 2 x 2*4*2*(2+2) = 128, layer 2 2 x 2*4*2*(4+2) = 192
    assert speed.encoder_flops(arch) == 320
    step = speed.decoder_step_flops(arch, src_len=3)
    # rnn: 2*4*4*(2+4+4) + 2*4*4*(4+4); attention: 2*4*4 + 4*3*4 + 4*4*4; output: 2*4*10
    assert step == {"decoder rnn": 320 + 256, "attention": 32 + 48 + 64, "output layer": 80}
    f = speed.training_flops(arch, src_len=3, src_per_tgt=0.5)
    assert f["encoder"] == 160 and f["forward"] == 160 + 576 + 144 + 80
    assert f["training"] == 3 * f["forward"]
    no_feed = speed.decoder_step_flops(speed.Arch(10, 2, 4, 2, feed=False), 3)
    assert no_feed["decoder rnn"] == 2 * 4 * 4 * (2 + 4) + 256
    assert speed.decode_flops(arch, src_tokens=6, hyp_steps=2, src_len=3) == 6 * 320 + 2 * (576 + 144 + 80)


def test_flops_are_twice_the_weights_of_transduce_s_model(speed):
    """Every matmul term is 2 x the weights it multiplies by, per token (transduce's own model)."""
    arch = speed.Arch(vocab=50, emb=6, hidden=8, layers=2, feed=True)
    model = Seq2Seq.from_config(ModelConfig(family="luong", attention="general", input_feeding=True,
                                            emb_dim=6, hidden=8, enc_layers=2, dec_layers=2), 50, 50)
    n = {name: p.numel() for name, p in model.named_parameters()}
    weights = lambda prefix: sum(v for k, v in n.items() if k.startswith(prefix) and ".weight_" in k)  # noqa: E731
    step = speed.decoder_step_flops(arch, src_len=0)
    assert speed.encoder_flops(arch) == 2 * weights("encoder.rnn.")
    assert step["decoder rnn"] == 2 * weights("decoder.rnn.")
    assert step["attention"] == 2 * (n["decoder.attention.score.proj.weight"] + n["decoder.readout.weight"])
    assert step["output layer"] == 2 * n["decoder.out.weight"]
    decoder_weights = weights("decoder.rnn.") + n["decoder.attention.score.proj.weight"] \
        + n["decoder.readout.weight"] + n["decoder.out.weight"]
    assert sum(i * o for i, o in speed.step_weights(arch)) == decoder_weights


def test_formula_lines_name_every_part(speed):
    lines = speed.flops_formula(speed.Arch(8000), src_len=14.8, src_per_tgt=0.967)
    text = "\n".join(lines)
    for part in ("encoder", "decoder rnn", "attention", "output layer", "training = 3 x forward"):
        assert part in text
    assert "output layer = 2*H*V = 8.19 M" in text


def test_parsers_read_captured_logs(speed):
    assert speed.parse_onmt_train(ONMT_TRAIN_LOG) == [(2, 2423.0), (4, 3210.0)]
    assert speed.ONMT_VOCAB.search(ONMT_TRAIN_LOG).group(1) == "7794"
    reports = speed.parse_transduce_train(TRANSDUCE_LOG)
    assert [step for step, _ in reports] == [2, 4]
    assert reports[1][1] == pytest.approx(3011.3746)
    assert speed.parse_onmt_translate_seconds(ONMT_TRANSLATE_LOG, 24) == pytest.approx(0.0312)
    no_average = ONMT_TRANSLATE_LOG.replace("(ms): 1.3", "(ms): 0.0")
    assert speed.parse_onmt_translate_seconds(no_average, 24) == 0.0
    with pytest.raises(ValueError):
        speed.parse_onmt_translate_seconds("nothing here", 24)


def test_steady_rate_drops_the_warm_up_reports(speed):
    reports = [(10, 100.0), (20, 700.0), (30, 650.0), (40, 720.0)]
    assert speed.steady_rate(reports, 1) == 700.0
    assert speed.steady_rate(reports, 0) == pytest.approx(675.0)
    with pytest.raises(ValueError, match="none after"):
        speed.steady_rate(reports[:1], 1)


def test_number_formatting(speed):
    assert speed.fmt_runs([702.4, 610.0, 745.2]) == "702 (610-745)"
    assert speed.fmt_runs([1234.56], 1) == "1,234.6"
    assert speed.fmt_runs([]) == "-"
    assert speed.ratio(1100, 1000) == "1.10x" and speed.ratio(None, 1000) == "-"
    assert speed.ratio(float("nan"), 1) == "-"
    assert speed.md_table(["a", "b"], [["1", "2"]]) == ["| a | b |", "|---|---|", "| 1 | 2 |"]


def fake_results(speed) -> dict:
    """Stored results of two alternations at 1 and 2 threads, and a matmul peak."""
    rates = {}
    for threads, scale in ((1, 1.0), (2, 1.8)):
        for setting, (onmt, td) in {"feed-fp32": (650, 700), "feed-bf16": (None, 1000),
                                    "nofeed-fp32": (900, 880), "nofeed-bf16": (None, 1300)}.items():
            if onmt:
                rates[f"{threads}|{setting}|OpenNMT-py"] = [onmt * scale, onmt * scale + 20]
            rates[f"{threads}|{setting}|transduce"] = [td * scale, td * scale + 20]
    peak = {"gflops": {"1|fp32": {"a": 80.0, "b": 100.0}, "1|bf16": {"a": 400.0}}}
    return {"train": {"rates": rates}, "peak": peak}


def test_training_table_rows(speed):
    results = fake_results(speed)
    corpus = speed.Corpus(Path("."), 29000, 10, 3.0, 0.5, 1000)
    arch = lambda feed: speed.Arch(10, 2, 4, 2, feed)  # noqa: E731
    rows = speed.training_rows(results, 1, corpus, arch)
    assert [r[0] for r in rows] == [s.label for s in speed.SETTINGS]
    assert rows[0][1:4] == ["660 (650-670)", "710 (700-720)", "1.08x"]
    assert rows[1][1] == "(no bf16 on CPU)" and rows[1][3] == "1.53x"  # 1010 / 660: bf16 vs OpenNMT-py fp32
    flops = speed.training_flops(arch(True), 3.0, 0.5)["training"]
    assert rows[0][5] == f"{100 * 710 * flops / 1e9 / 100.0:.0f}%"
    threads = speed.thread_rows(results)
    assert len(threads) == 6 and all(r[-1] == "2 threads" for r in threads)
    assert threads[0][:5] == ["input feeding, fp32", "OpenNMT-py", "660", "1,180", "1.79x"]


def test_inference_rows_pair_the_tools(speed):
    row = lambda seconds, pieces, bleu: {"seconds": seconds, "sentences": 10, "pieces": pieces,  # noqa: E731
                                         "src_pieces": 150, "bleu": bleu}
    rows = {"1|5|32|OpenNMT-py|fp32": row([1.0, 1.2, 0.8], 130, 30.0),
            "1|5|32|transduce|fp32": row([0.5], 120, 30.5),
            "1|5|32|transduce|int8": row([0.25], 125, 30.1)}
    results = {"infer": {"rows": rows}, "peak": {"gflops": {"1|fp32": {"x": 100.0}}}}
    table = speed.inference_rows(results, 1, speed.Arch(10, 2, 4))
    assert [r[0] for r in table] == ["beam 5, batch 32", "transduce int8, beam 5, batch 32"]
    assert table[0][1:5] == ["10.0 (8.3-12.5)", "20.0", "2.00x", "130 / 240"]
    assert table[0][5:7] == ["13.0 / 12.0", "30.0 / 30.5"]
    assert table[1][1] == "-" and table[1][3] == "4.00x" and table[1][7].endswith("/ -")
    json.dumps(results)  # what measure_inference stores is plain JSON


def test_without_shared_one_clear_message(speed, monkeypatch, tmp_path):
    monkeypatch.setattr(speed, "PEERS_SETUP", tmp_path / "shared" / "peers" / "setup.sh")
    with pytest.raises(SystemExit, match=r"needs \.\./shared beside the repository"):
        speed.check_shared()


def test_merge_threads_keeps_other_thread_counts(speed):
    old = {"threads": [1], "rates": {"1|feed-fp32|transduce": [600.0]}, "command": "speed.py --threads 1"}
    new = {"threads": [2], "rates": {"2|feed-fp32|transduce": [1000.0]}, "commands": ["speed.py --threads 2"]}
    merged = speed.merge_threads(old, new)
    assert merged["threads"] == [1, 2]
    assert merged["rates"] == {"1|feed-fp32|transduce": [600.0], "2|feed-fp32|transduce": [1000.0]}
    assert merged["commands"] == ["speed.py --threads 1", "speed.py --threads 2"]
    again = {"threads": [1], "rates": {"1|feed-fp32|transduce": [650.0]}, "commands": ["x"]}
    assert speed.merge_threads(old, again) is again  # the same thread count is replaced


def test_transduce_side_is_pinned_to_the_onmt_configuration(speed, tmp_path, monkeypatch):
    """The compared model is OpenNMT-py's (peers/onmt-rnn.yaml), not whatever the multi30k
    recipe is tuned to: 2x512 biLSTM, dropout 0.1, Adam 1e-3, 64 sentences, GNMT 0.6."""
    import argparse

    from transduce import config

    monkeypatch.setattr(config, "recipe_path", lambda name: pytest.fail("reads the recipe"))
    corpus = speed.Corpus(tmp_path, 29000, 7794, 13.0, 1.0, 1000)
    bench = speed.Bench(argparse.Namespace(emb=256, hidden=512), tmp_path, corpus, tmp_path)
    path = speed.transduce_config(bench, tmp_path / "run", speed.Setting("x", "", False, "fp32"), 60, 10)
    cfg = config.load(path, [])
    m, t, s = cfg.model, cfg.train, cfg.search
    assert (m.family, m.attention, m.cell, m.enc_layers, m.dec_layers, m.bidirectional) == \
        ("luong", "general", "lstm", 2, 2, True)
    assert (m.emb_dim, m.hidden, m.input_feeding, m.dropout, m.tie_embeddings) == (256, 512, False, 0.1, False)
    assert (t.batch_sentences, t.optimizer, t.lr, t.clip_norm, t.label_smoothing, t.max_steps) == \
        (64, "adam", 1e-3, 5.0, 0.0, 60)
    assert (s.beam, s.length_penalty, s.alpha) == (5, "gnmt", 0.6)
