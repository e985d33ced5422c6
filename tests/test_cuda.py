"""On a GPU: the fused cuDNN path equals the step loop, training runs and resumes on CUDA,
bf16 autocast trains, and a model trained on the GPU answers the same on the CPU.

Every test here skips without CUDA (CI has none); `python -m pytest tests/test_cuda.py` on a
GPU machine runs them.
"""
from __future__ import annotations

import json

import pytest
import torch

from transduce import checkpoint as ck
from transduce.config import ModelConfig
from transduce.device import resolve_precision
from transduce.model import Seq2Seq
from transduce.train import train
from transduce.translator import Translator

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CUDA = torch.device("cuda")
V_SRC, V_TGT = 15, 17
FUSABLE = [dict(family="sutskever"), dict(family="cho"),
           dict(family="luong", input_feeding=False, attention="general"),
           dict(family="luong", input_feeding=False, attention="concat")]
TEXTS = ["a b c", "d e", "b", "", "e d c b a f"]


def _model(**conf) -> Seq2Seq:
    torch.manual_seed(0)
    base = dict(emb_dim=8, hidden=16, enc_layers=2, dec_layers=2, dropout=0.0, emb_dropout=0.0)
    return Seq2Seq.from_config(ModelConfig(**{**base, **conf}), V_SRC, V_TGT).to(CUDA).eval()


def _batch():
    g = torch.Generator().manual_seed(1)
    src = torch.randint(4, V_SRC, (3, 6), generator=g)
    src[1, 4:], src[2, 1:] = 0, 0
    tgt_in = torch.randint(4, V_TGT, (3, 5), generator=g)
    tgt_in[:, 0] = 2
    return src.to(CUDA), torch.tensor([6, 4, 1]), tgt_in.to(CUDA)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("conf", FUSABLE, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_fused_cudnn_path_equals_the_step_loop(cell, conf):
    model = _model(cell=cell, **conf)
    src, lengths, tgt_in = _batch()
    fused = model(src, lengths, tgt_in)
    loop = model(src, lengths, tgt_in, fused=False)
    assert fused.logits.device.type == "cuda"
    torch.testing.assert_close(fused.logits, loop.logits, atol=1e-4, rtol=1e-4)


def test_precision_auto_is_bf16_on_a_gpu():
    assert resolve_precision(CUDA, "auto") == "bf16"


def test_bf16_autocast_backward_is_finite_and_close_to_fp32():
    model = _model(family="luong", input_feeding=True)
    src, lengths, tgt_in = _batch()
    ref = model(src, lengths, tgt_in).logits
    model.train()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = model(src, lengths, tgt_in).logits
    out.float().logsumexp(-1).mean().backward()
    assert out.dtype == torch.bfloat16
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert (out.float() - ref).abs().max() < 5e-2


def _run(tiny_config, folder, **train_opts):
    return train(tiny_config(train=dict(device="cuda", **train_opts)), folder)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_training_on_the_gpu_learns_and_the_cpu_answers_the_same(tmp_path, tiny_config, precision):
    _run(tiny_config, tmp_path / "run", max_steps=40, valid_every=20, lr=3e-2, precision=precision)
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if r["split"] == "train" and "loss" in r]
    assert losses[-1] < 0.8 * losses[0]
    weights = ck.read_tensors(tmp_path / "run" / "model.safetensors")
    assert {t.device.type for t in weights.values()} == {"cpu"}  # the folder loads anywhere
    on_gpu = Translator.from_dir(tmp_path / "run", device="cuda")
    on_cpu = Translator.from_dir(tmp_path / "run", device="cpu")
    for beam in (1, 3):
        gpu = on_gpu.translate(TEXTS, beam=beam)
        cpu = on_cpu.translate(TEXTS, beam=beam)
        assert [r.tokens for r in gpu] == [r.tokens for r in cpu]
        assert [r.score for r in gpu] == pytest.approx([r.score for r in cpu], abs=1e-3)
    # teacher-forced scores (what --rescore uses): a repeated source is encoded once, with
    # its lengths on the CPU and its rows on the GPU
    sources = ["a b c", "a b c", "d e", "a b c", ""]
    targets = ["a b", "c", "d e f", "", "a"]
    gpu, cpu = on_gpu.score(sources, targets), on_cpu.score(sources, targets)
    assert [n for _, n in gpu] == [n for _, n in cpu] and gpu[-1] == (0.0, 0)
    assert [lp for lp, _ in gpu] == pytest.approx([lp for lp, _ in cpu], abs=1e-3)


def test_resume_on_the_gpu_continues_the_same_run(tmp_path, tiny_config):
    opts = dict(max_steps=8, valid_every=100, teacher_forcing=0.6)
    _run(tiny_config, tmp_path / "straight", **opts)
    _run(tiny_config, tmp_path / "split", **dict(opts, max_steps=4))
    train(tiny_config(train=dict(device="cuda", **opts)), tmp_path / "split", resume=True)
    a = ck.read_tensors(tmp_path / "straight" / "checkpoints" / "step-8" / "model.safetensors")
    b = ck.read_tensors(tmp_path / "split" / "checkpoints" / "step-8" / "model.safetensors")
    # the coins and the data order are restored exactly; atomics in cuDNN/embedding backward
    # may change the last bits, so equal up to float noise
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-4, msg=k)
