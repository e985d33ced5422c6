"""Training-step throughput of each decoder family: fused path vs step loop.

Measures target tokens per second for one training step (forward + backward
+ Adam step) at a realistic size (emb 256, hidden 512, 2 layers,
bidirectional LSTM encoder, vocabulary 8000), fp32 and bf16 autocast. The
variants of one batch size and precision are timed side by side (round
robin, one repetition of each in turn) and the median is reported, so that
other load on the machine hits them alike.

    python3 bench/bench_models.py                       # CPU, batches 32 64 128
    python3 bench/bench_models.py --device cuda --batches 64 256
    python3 bench/bench_models.py --quick                # tiny smoke run

On a CPU shared with other jobs use --threads 1: with more OpenMP threads
than free cores every small op waits for a descheduled thread (a fused
step measured 8 s with 2 threads vs 1.2 s with 1 on a loaded 2-core box).
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F

from transduce import rnn as rnnlib
from transduce.config import ModelConfig
from transduce.model import Seq2Seq

FAMILIES = {
    "sutskever": dict(family="sutskever"),
    "cho": dict(family="cho"),
    "bahdanau": dict(family="bahdanau"),
    "luong+feed": dict(family="luong", attention="general", input_feeding=True),
    "luong": dict(family="luong", attention="general", input_feeding=False),
}


def make_batch(n: int, max_len: int, vocab: int, device: str, seed: int):
    """Random ids with lengths in [0.6 max_len, max_len]; returns tensors and non-pad target tokens."""
    g = torch.Generator().manual_seed(seed)
    lo = max(1, int(0.6 * max_len))
    src_len = torch.randint(lo, max_len + 1, (n,), generator=g)
    tgt_len = torch.randint(lo, max_len + 1, (n,), generator=g)
    src = torch.randint(4, vocab, (n, max_len), generator=g)
    tgt = torch.randint(4, vocab, (n, max_len + 1), generator=g)
    src[torch.arange(max_len)[None] >= src_len[:, None]] = 0
    tgt[torch.arange(max_len + 1)[None] > tgt_len[:, None]] = 0  # BOS + tgt_len tokens
    tgt[:, 0] = 2
    tgt_in, tgt_out = tgt[:, :-1], tgt[:, 1:]
    n_tokens = int((tgt_out != 0).sum())
    return [t.to(device) for t in (src, src_len, tgt_in, tgt_out)], n_tokens


def module_step(rnn, x, hidden):
    """The alternative step kernel: the nn.LSTM module on a length-1 sequence."""
    out, hidden = rnnlib.run_seq(rnn, x.unsqueeze(1), hidden)
    return out.squeeze(1), hidden


def make_runner(model: Seq2Seq, batch, fused: bool, precision: str, device: str,
                step_impl: Callable | None) -> Callable[[], None]:
    """A closure running one training step of ``model`` on ``batch``."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    src, src_len, tgt_in, tgt_out = batch
    dev = torch.device(device).type
    amp = (lambda: torch.autocast(dev, dtype=torch.bfloat16)) if precision == "bf16" else contextlib.nullcontext

    def run() -> None:
        original = rnnlib.run_step
        if step_impl is not None:
            rnnlib.run_step = step_impl
        try:
            with amp():
                logits = model(src, src_len, tgt_in, fused=fused).logits
                loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), tgt_out.reshape(-1),
                                       ignore_index=0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        finally:
            rnnlib.run_step = original
        if dev == "cuda":
            torch.cuda.synchronize()

    return run


def variants(names: list[str], compare_step: bool) -> list[tuple[str, str, bool, Callable | None]]:
    """(label, family key, fused, step kernel override) to time side by side."""
    out = []
    for name in names:
        model_cfg = FAMILIES[name]
        fusable = model_cfg["family"] in ("sutskever", "cho") or not model_cfg.get("input_feeding", True)
        if fusable:
            out.append((f"{name} fused", name, True, None))
        out.append((f"{name} loop", name, False, None))
        if compare_step and name == "luong+feed":
            out.append((f"{name} loop(module)", name, False, module_step))
    return out


def bench_size(args, n_sentences: int, precision: str) -> dict[str, float]:
    """Median tokens/s of every variant at one batch size and precision."""
    batch, n_tokens = make_batch(n_sentences, args.tgt_len, args.vocab, args.device, seed=n_sentences)
    runners = {}
    for label, name, fused, impl in variants(args.families, args.compare_step):
        torch.manual_seed(0)
        cfg = ModelConfig(emb_dim=args.emb, hidden=args.hidden, enc_layers=args.layers,
                          dec_layers=args.layers, bidirectional=True, dropout=0.2, emb_dropout=0.1,
                          **FAMILIES[name])
        model = Seq2Seq.from_config(cfg, args.vocab, args.vocab).to(args.device).train()
        runners[label] = make_runner(model, batch, fused, precision, args.device, impl)
        runners[label]()  # warm-up
    times: dict[str, list[float]] = {label: [] for label in runners}
    for _ in range(args.reps):
        for label, run in runners.items():
            start = time.perf_counter()
            run()
            times[label].append(time.perf_counter() - start)
    return {label: n_tokens / statistics.median(ts) for label, ts in times.items()}, n_tokens


def report(n_sentences: int, n_tokens: int, precision: str, speeds: dict[str, float]) -> None:
    """Print one block: tokens/s per variant and fused/loop ratios."""
    print(f"\nbatch {n_sentences} sentences ({n_tokens} target tokens), {precision}")
    for label, speed in speeds.items():
        name = label.split(" ")[0]
        ratio = ""
        if label.endswith("fused") and f"{name} loop" in speeds:
            ratio = f"   fused/loop = {speed / speeds[f'{name} loop']:.2f}x"
        print(f"  {label:<24} {speed:>9,.0f} tok/s{ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 64, 128], help="sentences per batch")
    parser.add_argument("--tgt-len", type=int, default=25, help="max target (and source) length")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--emb", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--compare-step", action="store_true",
                        help="also time the step loop with nn.LSTM length-1 calls instead of cell kernels")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads (1 avoids OpenMP stalls on a shared CPU)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.batches, args.reps, args.emb, args.hidden, args.vocab = [8], 2, 16, 32, 100
    print(f"device {args.device} ({torch.get_num_threads()} threads), torch {torch.__version__}, "
          f"emb {args.emb}, hidden {args.hidden}, {args.layers} layers, bi-LSTM encoder, vocab {args.vocab}, "
          f"median of {args.reps}")
    for n_sentences in args.batches:
        for precision in args.precisions:
            speeds, n_tokens = bench_size(args, n_sentences, precision)
            report(n_sentences, n_tokens, precision, speeds)


if __name__ == "__main__":
    main()
