"""Plots: attention heatmaps and training curves (matplotlib, Agg backend).

``plot_attention`` draws one [T, S] attention matrix with source tokens on
the x axis and output tokens on the y axis. ``plot_training`` reads
``RUN/log.jsonl`` (one JSON object per line: ``step``, ``split`` = train |
valid, ``loss``, ``ppl`` and optional ``bleu``, ``chrf``, ``wer``, ``per``,
``lr``, ``tf_ratio``, ``tok_per_s`` ...) and writes to ``RUN/plots/``:

* ``loss.png``     loss and perplexity, train vs valid;
* ``metrics.png``  one panel per other numeric valid metric (bleu, chrf, wer, ...);
* ``schedule.png`` learning rate and teacher-forcing ratio;
* ``speed.png``    training throughput (tok_per_s), if logged.

Figures without data are skipped. The format follows the suffix (.png, .svg, .pdf).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .errors import UserError  # noqa: E402

NOT_METRICS = {"step", "split", "loss", "ppl", "lr", "tf_ratio", "tok_per_s", "epoch",
               "time", "elapsed", "sent_per_s", "n_tokens", "grad_norm"}


def plot_attention(attention, src_tokens: Sequence[str], out_tokens: Sequence[str],
                   path: str | Path, title: str | None = None) -> Path:
    """Heatmap of attention [T, S] (tensor, array or nested lists) to ``path``.

    Rows are ``out_tokens`` (T), columns ``src_tokens`` (S); extra rows or
    columns of ``attention`` beyond the token lists are cut off.
    """
    data = np.asarray(attention.tolist() if hasattr(attention, "tolist") else attention, dtype=float)
    data = data.reshape(-1, data.shape[-1]) if data.size else np.zeros((0, 0))
    data = data[:len(out_tokens), :len(src_tokens)]
    width = 1.5 + 0.35 * max(len(src_tokens), 4)
    height = 1.2 + 0.35 * max(len(out_tokens), 4)
    fig, ax = plt.subplots(figsize=(min(width, 40), min(height, 40)))
    try:
        image = ax.imshow(data if data.size else np.zeros((1, 1)), cmap="viridis", vmin=0.0,
                          vmax=1.0, aspect="auto")
        ax.set_xticks(range(len(src_tokens)), list(src_tokens), rotation=90)
        ax.set_yticks(range(len(out_tokens)), list(out_tokens))
        ax.set_xlabel("source")
        ax.set_ylabel("output")
        if title:
            ax.set_title(title)
        fig.colorbar(image, ax=ax, fraction=0.04)
        fig.tight_layout()
        return _save(fig, path)
    finally:
        plt.close(fig)


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def read_log(path: str | Path) -> list[dict]:
    """Read a log.jsonl file; a missing or empty file or a bad line is a UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"training log not found: {path}")
    records = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{path}:{lineno}: not a JSON object ({exc.msg})") from None
            if not isinstance(rec, dict) or "step" not in rec:
                raise UserError(f"{path}:{lineno}: a log record must be a JSON object with a 'step'")
            records.append(rec)
    if not records:
        raise UserError(f"training log is empty: {path}")
    return records


def _series(records: list[dict], split: str, key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of numeric ``key`` in records of ``split``."""
    xs, ys = [], []
    for rec in records:
        value = rec.get(key)
        if rec.get("split", "train") == split and isinstance(value, (int, float)) \
                and not isinstance(value, bool) and math.isfinite(value):
            xs.append(rec["step"])
            ys.append(float(value))
    return xs, ys


def _panels(records: list[dict], keys: Sequence[str], splits: Sequence[str], path: Path,
            log_keys: Sequence[str] = ()) -> Path | None:
    """One panel per key with data, each with one line per split; None if nothing to draw."""
    drawn = [(k, [(s, _series(records, s, k)) for s in splits]) for k in keys]
    drawn = [(k, lines) for k, lines in drawn if any(xs for _, (xs, _) in lines)]
    if not drawn:
        return None
    fig, axes = plt.subplots(1, len(drawn), figsize=(4.5 * len(drawn), 3.5), squeeze=False)
    try:
        for ax, (key, lines) in zip(axes[0], drawn):
            for split, (xs, ys) in lines:
                if xs:
                    ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3, label=split)
            ax.set_xlabel("step")
            ax.set_title(key)
            if key in log_keys and all(y > 0 for _, (_, ys) in lines for y in ys):
                ax.set_yscale("log")
            ax.grid(alpha=0.3)
            ax.legend()
        fig.tight_layout()
        return _save(fig, path)
    finally:
        plt.close(fig)


def _metric_keys(records: list[dict]) -> list[str]:
    """Numeric keys of valid records other than loss/ppl/schedules, in first-seen order."""
    keys: dict[str, None] = {}
    for rec in records:
        if rec.get("split") == "valid":
            for key, value in rec.items():
                if key not in NOT_METRICS and isinstance(value, (int, float)) \
                        and not isinstance(value, bool):
                    keys[key] = None
    return list(keys)


def plot_training(run_dir: str | Path) -> list[Path]:
    """Draw training curves from ``run_dir/log.jsonl`` into ``run_dir/plots/``; -> files written."""
    run_dir = Path(run_dir)
    records = read_log(run_dir / "log.jsonl")
    out = run_dir / "plots"
    figures = [
        _panels(records, ["loss", "ppl"], ["train", "valid"], out / "loss.png", log_keys=["ppl"]),
        _panels(records, _metric_keys(records), ["valid"], out / "metrics.png"),
        _panels(records, ["lr", "tf_ratio"], ["train"], out / "schedule.png", log_keys=["lr"]),
        _panels(records, ["tok_per_s"], ["train"], out / "speed.png"),
    ]
    return [p for p in figures if p is not None]
