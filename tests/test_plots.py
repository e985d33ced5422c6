"""Plots: attention heatmaps and training curves produce real image files."""
from __future__ import annotations

import json
import struct

import pytest
import torch

from transduce import plots
from transduce.errors import UserError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path):
    """(width, height) from the IHDR chunk, after checking the PNG signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_attention_png(tmp_path):
    att = torch.softmax(torch.randn(3, 4), -1)
    path = plots.plot_attention(att, ["a", "b", "c", "d"], ["x", "y", "</s>"], tmp_path / "sub" / "att.png")
    width, height = png_size(path)
    assert width > 0 and height > 0


def test_attention_svg_and_lists(tmp_path):
    path = plots.plot_attention([[0.2, 0.8], [1.0, 0.0]], ["a", "b"], ["x", "y"], tmp_path / "att.svg")
    text = path.read_text(encoding="utf-8")
    assert "<svg" in text


def test_attention_image_content_differs_with_attention(tmp_path):
    p1 = plots.plot_attention([[1.0, 0.0], [0.0, 1.0]], ["a", "b"], ["x", "y"], tmp_path / "1.png")
    p2 = plots.plot_attention([[0.0, 1.0], [1.0, 0.0]], ["a", "b"], ["x", "y"], tmp_path / "2.png")
    assert p1.read_bytes() != p2.read_bytes()


def write_log(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def test_plot_training(tmp_path):
    records = []
    for step in range(50, 501, 50):
        records.append({"step": step, "split": "train", "loss": 5.0 / step ** 0.3, "ppl": 2.0 + 100 / step,
                        "lr": 1e-3, "tf_ratio": 1.0 - step / 1000, "tok_per_s": 1000.0 + step})
        if step % 100 == 0:
            records.append({"step": step, "split": "valid", "loss": 4.0 / step ** 0.3, "ppl": 3.0,
                            "bleu": step / 20, "wer": 50.0 - step / 20})
    write_log(tmp_path / "log.jsonl", records)
    files = plots.plot_training(tmp_path)
    assert sorted(p.name for p in files) == ["loss.png", "metrics.png", "schedule.png", "speed.png"]
    for p in files:
        assert p.parent == tmp_path / "plots"
        width, height = png_size(p)
        assert width > 0 and height > 0
    # metrics.png has one panel per valid metric: two panels are wider than one
    assert png_size(tmp_path / "plots" / "metrics.png")[0] > png_size(tmp_path / "plots" / "speed.png")[0]


def test_plot_training_grid_flat_panels_and_best_step(tmp_path):
    records = [{"step": s, "split": "train", "loss": 3.0 / s, "ppl": 1 + 9 / s, "lr": 1e-3,
                "tf_ratio": 1.0, "grad_norm": 1.0 + 1 / s, "tok_per_s": 900.0 + s} for s in range(1, 9)]
    records += [{"step": s, "split": "valid", "loss": 2.0 / s, "ppl": 1 + 5 / s, "bleu": s, "chrf": 2 * s,
                 "wer": 50 - s, "per": 40 - s, "exact_match": s / 2} for s in (2, 4, 6, 8)]
    write_log(tmp_path / "log.jsonl", records)
    plain = {p.name: p.read_bytes() for p in plots.plot_training(tmp_path)}
    one_w, one_h = png_size(tmp_path / "plots" / "speed.png")
    grid_w, grid_h = png_size(tmp_path / "plots" / "metrics.png")
    assert grid_w == 3 * one_w and grid_h == 2 * one_h  # 5 metric panels: 3 columns, 2 rows
    # lr and tf_ratio never change: only the grad-norm panel is drawn
    assert png_size(tmp_path / "plots" / "schedule.png") == (one_w, one_h)
    (tmp_path / "meta.json").write_text(json.dumps({"best": {"metric": "bleu", "step": 6}}))
    assert plots.best_step(tmp_path) == 6
    marked = {p.name: p.read_bytes() for p in plots.plot_training(tmp_path)}
    assert all(marked[name] != plain[name] for name in plain)  # a best-step line in every figure


def test_plot_training_train_only(tmp_path):
    write_log(tmp_path / "log.jsonl", [{"step": 1, "split": "train", "loss": 3.0, "ppl": 20.0}])
    assert [p.name for p in plots.plot_training(tmp_path)] == ["loss.png"]


def test_plot_training_errors(tmp_path):
    with pytest.raises(UserError, match="log.jsonl"):
        plots.plot_training(tmp_path)
    (tmp_path / "log.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(UserError, match="empty.*log.jsonl"):
        plots.plot_training(tmp_path)
    (tmp_path / "log.jsonl").write_text('{"step": 1, "loss": 2}\n{oops\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"log.jsonl:2"):
        plots.plot_training(tmp_path)
