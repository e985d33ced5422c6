"""Plots: attention heatmaps and training curves (matplotlib, Agg backend).

``plot_attention`` draws one [T, S] attention matrix with source tokens on
the x axis and output tokens on the y axis. ``plot_training`` reads
``RUN/log.jsonl`` (one JSON object per line: ``step``, ``split`` = train |
valid, ``loss``, ``ppl`` and optional ``bleu``, ``chrf``, ``wer``, ``per``,
``lr``, ``tf_ratio``, ``tok_per_s`` ...) and writes to ``RUN/plots/``:

* ``loss.png``     loss and perplexity, train vs valid;
* ``metrics.png``  one panel per other numeric valid metric (bleu, chrf, wer, ...);
* ``schedule.png`` learning rate, teacher-forcing ratio and gradient norm;
* ``speed.png``    training throughput (tok_per_s), if logged.

Panels sit in a grid of at most three columns; a panel whose values never
change (a constant teacher-forcing ratio) is left out, and a figure without
data is skipped. The best step (``meta.json`` of the run: the step of the
best model by ``train.early_stop_metric``) is a dashed line in every panel.
The format follows the suffix (.png, .svg, .pdf).
"""
from __future__ import annotations

import json
import math
import textwrap
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
            ax.set_title("\n".join(textwrap.wrap(title, width=max(30, int(8 * width)))), fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.04)
        fig.tight_layout()
        return _save(fig, path)
    finally:
        plt.close(fig)


def attention_title(translation) -> str:
    """'source -> output (score S)' of a Translation, for plot_attention."""
    return f"{translation.source} \u2192 {translation.text}   (score {translation.score:.3f})"


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


def _changes(lines: list) -> bool:
    """True when a panel has one value, or values that are not all one constant."""
    values = [y for _, (_, ys) in lines for y in ys]
    if len(values) < 2:
        return bool(values)
    return max(values) - min(values) > 1e-12 * max(1.0, abs(max(values)))


def _panels(records: list[dict], keys: Sequence[str], splits: Sequence[str], path: Path,
            log_keys: Sequence[str] = (), best_step: int | None = None) -> Path | None:
    """One panel per key whose values change, one line per split, in a grid of at most
    three columns, the best step marked; None if nothing to draw."""
    drawn = [(k, [(s, _series(records, s, k)) for s in splits]) for k in keys]
    drawn = [(k, lines) for k, lines in drawn if _changes(lines)]
    if not drawn:
        return None
    cols = min(3, len(drawn))
    rows = math.ceil(len(drawn) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.3 * rows), squeeze=False)
    try:
        for ax in axes.flat[len(drawn):]:
            ax.set_visible(False)
        for ax, (key, lines) in zip(axes.flat, drawn):
            _draw_panel(ax, key, lines, key in log_keys, best_step)
        fig.tight_layout()
        return _save(fig, path)
    finally:
        plt.close(fig)


def _draw_panel(ax, key: str, lines: list, log_scale: bool, best_step: int | None) -> None:
    """One panel: a line per split, log scale when asked and possible, the best step dashed."""
    for split, (xs, ys) in lines:
        if xs:
            ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3, label=split)
    if best_step is not None:
        ax.axvline(best_step, color="grey", linestyle="--", linewidth=1, label=f"best (step {best_step})")
    ax.set_xlabel("step")
    ax.set_title(key)
    if log_scale and all(y > 0 for _, (_, ys) in lines for y in ys):
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def best_step(run_dir: Path) -> int | None:
    """The step of the run's best model (its meta.json), or None when unknown."""
    try:
        best = json.loads((run_dir / "meta.json").read_text(encoding="utf-8")).get("best") or {}
    except (OSError, ValueError, AttributeError):
        return None
    step = best.get("step") if isinstance(best, dict) else None
    return step if isinstance(step, int) and not isinstance(step, bool) else None


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
    best = best_step(run_dir)
    figures = [
        _panels(records, ["loss", "ppl"], ["train", "valid"], out / "loss.png", ["ppl"], best),
        _panels(records, _metric_keys(records), ["valid"], out / "metrics.png", (), best),
        _panels(records, ["lr", "tf_ratio", "grad_norm"], ["train"], out / "schedule.png",
                ["lr"], best),
        _panels(records, ["tok_per_s"], ["train"], out / "speed.png", (), best),
    ]
    return [p for p in figures if p is not None]
