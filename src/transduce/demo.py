"""``transduce demo``: the built-in default, end to end.

Trains the grapheme-to-phoneme recipe (``recipes/demo.yaml``) on the CMU
Pronouncing Dictionary, scores the test split with WER/PER, prints sample
transductions and writes an attention heatmap.
"""
from __future__ import annotations

import json
from pathlib import Path

from . import config
from .cli import RECIPES

SAMPLE_WORDS = ["hello", "transduce", "sequence", "pytorch", "encoder", "attention", "bahdanau", "cheesecake"]

QUICK_OVERRIDES = [
    "train.max_steps=150",
    "train.valid_every=150",
    "train.valid_max_sentences=200",
    "data.max_train=20000",
]


def run_demo(out: Path, quick: bool = False, overrides: list[str] | None = None) -> dict:
    """Train, evaluate and sample the demo g2p model into ``out``; return the test scores."""
    from .corpora import load_splits
    from .plots import plot_attention
    from .train import train
    from .translator import Translator, evaluate

    extra = (QUICK_OVERRIDES if quick else []) + list(overrides or [])
    cfg = config.load(RECIPES / "demo.yaml", extra)
    print(f"transduce demo: training the g2p recipe into {out} ({cfg.train.max_steps} steps)")
    train(cfg, out, resume=False)

    translator = Translator.from_dir(out)
    test = load_splits(cfg.data).test
    if quick:
        test = test[:300]
    sources = [src for src, _ in test]
    references = [tgt for _, tgt in test]
    scores = evaluate(translator, sources, references, metrics=["wer", "per"], beam=cfg.search.beam)
    scores.pop("hypotheses", None)
    print(f"\ntest split ({len(test)} pronunciations): "
          f"WER {scores['wer']:.2f}%  PER {scores['per']:.2f}%")
    (out / "test_scores.json").write_text(json.dumps(scores, indent=2), encoding="utf-8")

    results = translator.translate(SAMPLE_WORDS, return_attention=True)
    print("\nsamples:")
    for word, tr in zip(SAMPLE_WORDS, results):
        print(f"  {word:12s} -> {tr.text}")
    heatmap = out / "attention.png"
    first = results[0]
    if first.attention is not None:
        plot_attention(first.attention, first.src_tokens, first.tokens, heatmap)
        print(f"\nattention heatmap for '{SAMPLE_WORDS[0]}': {heatmap}")
    print(f"model folder: {out}  (try: echo hello | transduce translate {out})")
    return scores
