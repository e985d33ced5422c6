"""``transduce demo``: the built-in default, end to end.

Trains the grapheme-to-phoneme recipe (``recipes/demo.yaml``) on the CMU
Pronouncing Dictionary, scores the test split with the g2p word error rate
(WER: words with any wrong phoneme) and phoneme error rate (PER: phoneme edit
distance), prints sample transductions and writes an attention heatmap.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from . import config
from .config import RECIPES, DecodeOptions
from .corpora import load_splits, strip_stress
from .device import resolve_device
from .metrics import g2p_error_rates
from .train import train
from .translator import Translator

SAMPLE_WORDS = ["hello", "transduce", "sequence", "pytorch", "encoder", "attention", "bahdanau", "cheesecake"]

# What the full recipe reaches, as measured (README "Results", bench/RESULTS.md):
# `python bench/quality.py g2p --out runs/g2p`, test split, beam 5.
FULL_RECIPE = ("the full g2p recipe (transduce train g2p --out runs/g2p: 2x512 biLSTM, 14,000 steps, "
               "about 3.4 hours on one core of a Xeon with AMX) reaches test WER 26.5%, PER 6.2%")

QUICK_OVERRIDES = [  # a smoke run: same pipeline, a fraction of the work
    "train.max_steps=60",
    "train.max_minutes=null",
    "train.valid_every=60",
    "train.valid_max_sentences=100",
    "data.max_train=10000",
]


def score_g2p(translator, pairs: list[tuple[str, str]], limit: int | None = None,
              options: DecodeOptions | None = None) -> dict:
    """Word and phoneme error rates on (word, pronunciation) pairs, all
    pronunciations of a word counting as references (see metrics.g2p_error_rates);
    decoded with ``options`` (default: the model's). The same outputs scored with
    ARPAbet stress digits removed from both sides are under ``..._no_stress`` (the
    usual convention of published CMUdict figures)."""
    refs: dict[str, list[str]] = {}
    for word, pron in pairs:
        refs.setdefault(word, []).append(pron)
    words = list(refs)[:limit]
    hyps = [tr.text for tr in translator.translate(words, options)]
    scores = g2p_error_rates(hyps, [refs[w] for w in words])
    plain = g2p_error_rates([strip_stress(h) for h in hyps],
                            [[strip_stress(r) for r in refs[w]] for w in words])
    scores.update({f"{k}_no_stress": v for k, v in plain.items()}, words=len(words))
    return scores


def run_demo(out: Path, quick: bool = False, overrides: list[str] | None = None) -> dict:
    """Train, evaluate and sample the demo g2p model into ``out``; return the test scores."""
    from .plots import attention_title, plot_attention  # matplotlib: heavy, loaded only when drawing

    started = time.perf_counter()
    extra = (QUICK_OVERRIDES if quick else []) + list(overrides or [])
    cfg = config.load(RECIPES / "demo.yaml", extra)
    if cfg.train.processes > 1 and resolve_device(cfg.train.device, key="train.device").type != "cpu":
        cfg = config.load(RECIPES / "demo.yaml", [*extra, "train.processes=1"])  # worker processes share CPU cores; a GPU trains alone
    budget = (f"{cfg.train.max_minutes:g} minutes or {cfg.train.max_steps:,} steps, whichever comes first"
              if cfg.train.max_minutes else f"{cfg.train.max_steps:,} steps")
    workers = f", {cfg.train.processes} worker processes" if cfg.train.processes > 1 else ""
    print(f"transduce demo: training the g2p recipe into {out} ({budget}{workers})")
    train(cfg, out, resume=False)
    trained = time.perf_counter()

    translator = Translator.from_dir(out)
    scores = score_g2p(translator, load_splits(cfg.data).test, limit=300 if quick else None)
    print(f"\ntest split ({scores['words']} words, beam {translator.config.search.beam}): "
          f"word error rate {scores['word_error_rate']:.1f}%, "
          f"phoneme error rate {scores['phoneme_error_rate']:.1f}%")

    results = translator.translate(SAMPLE_WORDS, return_attention=True)
    print("\nsamples:")
    for word, tr in zip(SAMPLE_WORDS, results):
        print(f"  {word:12s} -> {tr.text}")
    heatmap = out / "attention.png"
    first = results[0]
    if first.attention is not None:
        plot_attention(first.attention, first.src_tokens, first.tokens, heatmap,
                       title=attention_title(first))
        print(f"\nattention heatmap for '{SAMPLE_WORDS[0]}': {heatmap}")
    print(f"model folder: {out}  (try: echo hello | transduce translate {out})")
    done = time.perf_counter()
    print(f"\ntransduce demo took {(done - started) / 60:.1f} minutes "
          f"({(trained - started) / 60:.1f} training, {(done - trained) / 60:.1f} testing); "
          f"{FULL_RECIPE}.")
    scores["minutes"] = round((done - started) / 60, 2)
    (out / "test_scores.json").write_text(json.dumps(scores, indent=2), encoding="utf-8")
    return scores
