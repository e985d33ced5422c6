"""Training: the Trainer (step, validate, early stop, checkpoints, exact resume).

Run folder layout (``out_dir``)::

    config.yaml src.* tgt.* model.safetensors meta.json
                         the BEST model so far (by train.early_stop_metric),
                         so ``transduce translate RUN`` works on the run itself
                         (the last model when there is no validation set)
    log.jsonl            one JSON object per line (see below)
    tensorboard/         TensorBoard scalars (train.tensorboard)
    checkpoints/step-N/  the last ``keep_last`` checkpoints: a model folder plus
                         trainer/ (optimizer, RNG, counters); resume reads the
                         newest one that loads
    checkpoints/best-N/  the best ``keep_best`` model folders

Checkpoints are written at each validation (every ``valid_every`` steps and at
the end) and on Ctrl-C.

Steps. ``step`` counts optimizer updates. One update consumes a *group* of
``accum_steps * world_size`` consecutive batches of the epoch's seeded batch
order (batching.BatchSampler); rank r takes ``group[r::world_size]``. The
loss of every micro-batch is ``loss_sum * world_size / N`` with N the number
of target tokens of the whole group (known to every rank without
communication), so after DDP's gradient averaging the gradient is that of
``sum of token losses / N`` — exactly what one process gets on the same
global batch with ``accum_steps * world_size`` micro-batches. At the end of
an epoch a group is cut to a multiple of world_size batches (the rest of the
epoch is skipped; nothing is skipped with one process).

Exact resume. Before every update the torch RNG (dropout) and the
teacher-forcing coin generator are re-seeded from (seed, step, rank), the
batch order depends only on (seed, epoch) and the position in the epoch is
saved, the optimizer, LR schedule, GradScaler, early-stopping state and RNG
states are saved; validation runs under ``torch.random.fork_rng`` and does
not move any generator. On CPU a run stopped at step k and resumed ends with
weights bitwise equal to an uninterrupted run.

Validation: teacher-forced loss, perplexity and token accuracy on the whole
valid split; then greedy decoding (search.greedy, cfg.search.max_len_a/b) of
the first ``valid_max_sentences`` sentences scored with BLEU, chrF (sacreBLEU),
WER, PER and exact match (metrics.py), all always computed. Early stopping,
best checkpoints and reduce-on-plateau follow ``train.early_stop_metric``
(loss, wer, per: lower is better; bleu, chrf, accuracy: higher); ``accuracy``
is the teacher-forced token accuracy (in %).

LR schedules (``lr_at``), with s the number of updates done: ``constant``
lr; ``step`` lr * gamma ** (s // lr_step_size); ``inverse_sqrt`` lr *
sqrt(max(1, warmup)) / sqrt(max(s + 1, warmup)); ``linear`` and ``cosine``
decay from lr (after warm-up) to min_lr at max_steps; ``plateau`` lr times
plateau_factor after each plateau_patience validations without improvement.
Decays never go below min_lr. Warm-up (all schedules) multiplies by
(s + 1) / warmup_steps for s < warmup_steps.

log.jsonl: train records every ``log_every`` steps ``{"step", "split":
"train", "epoch", "loss", "ppl", "accuracy", "lr", "tf_ratio", "tok_per_s",
"grad_norm", "time"}`` (means over the interval); valid records ``{"step",
"split": "valid", "loss", "ppl", "accuracy", "bleu", "chrf", "wer", "per",
"exact_match", "time"}``; a record ``{"step", "split": "train", "tf_ratio"}``
whenever the teacher-forcing ratio changes by 0.01 or more since the last
one logged (every change goes to TensorBoard). On resume, records after the
resumed step are dropped.

Distributed (torchrun sets RANK / WORLD_SIZE / LOCAL_RANK): process group
``nccl`` on CUDA, ``gloo`` on CPU, DistributedDataParallel, rank 0 alone
validates, logs and writes checkpoints (barriers around them); validation
results are broadcast so that every rank takes the same early-stopping and
plateau decisions.
"""
from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch import nn

from . import checkpoint as ck
from .batching import BatchSampler, Example, collate, encode_pairs, example_sizes, filter_long
from .config import Config, TrainConfig
from .device import autocast, resolve_device, resolve_precision
from .errors import CheckpointError, ConfigError, DataError, UserError
from .metrics import HIGHER_IS_BETTER
from .loss import masked_cross_entropy, perplexity, token_accuracy
from .sampling import make_next_input, teacher_forcing_ratio, two_pass_inputs

DECODE_METRICS = ["bleu", "chrf", "wer", "per", "exact_match"]


def _say(msg: str) -> None:
    print(f"transduce: {msg}", file=sys.stderr, flush=True)


# --- devices and processes ------------------------------------------------------

@dataclass
class Dist:
    """This process's place in a (possibly one-process) job."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def init_distributed(device: torch.device) -> Dist:
    """Join the torchrun job described by the environment, if any."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if "RANK" not in os.environ or world <= 1:
        return Dist()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(rank, world, local, owns)


# --- learning rate and early stopping ---------------------------------------------

class LRSchedule:
    """Learning rate per update (see the module docstring); state is plain floats."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.scale = 1.0  # plateau reductions
        self.best: float | None = None
        self.bad = 0

    def lr_at(self, s: int) -> float:
        c = self.cfg
        if c.lr_schedule in ("linear", "cosine"):
            span = max(1, c.max_steps - c.warmup_steps)
            done = min(1.0, max(0, s - c.warmup_steps) / span)
            shape = 1.0 - done if c.lr_schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * done))
            lr = c.min_lr + (c.lr - c.min_lr) * shape
        else:
            decay = {"constant": 1.0, "plateau": self.scale,
                     "step": c.lr_gamma ** (s // max(1, c.lr_step_size)),
                     "inverse_sqrt": math.sqrt(max(1, c.warmup_steps)) / math.sqrt(max(s + 1, c.warmup_steps))
                     }[c.lr_schedule]
            lr = max(c.min_lr, c.lr * decay) if decay < 1.0 else c.lr
        if c.warmup_steps > 0 and s < c.warmup_steps:
            lr *= (s + 1) / c.warmup_steps
        return lr

    def observe(self, value: float, higher_is_better: bool) -> bool:
        """Feed a validation value (plateau schedule); True when the lr was reduced."""
        if self.cfg.lr_schedule != "plateau" or not math.isfinite(value):
            return False
        if self.best is None or _better(value, self.best, higher_is_better):
            self.best, self.bad = value, 0
            return False
        self.bad += 1
        if self.bad <= self.cfg.plateau_patience:
            return False
        self.scale *= self.cfg.plateau_factor
        self.bad = 0
        return True

    def state_dict(self) -> dict:
        return {"scale": self.scale, "best": self.best, "bad": self.bad}

    def load_state_dict(self, state: dict) -> None:
        self.scale, self.best, self.bad = state["scale"], state["best"], state["bad"]


def _better(a: float, b: float, higher: bool) -> bool:
    return a > b if higher else a < b


@dataclass
class EarlyStopping:
    """Best value of the early-stop metric, when it was reached, validations since."""

    metric: str
    patience: int | None
    best: float | None = None
    best_step: int | None = None
    bad: int = 0

    def update(self, value: float, step: int) -> bool:
        """Record a validation; True when it is a new best."""
        if math.isfinite(value) and (self.best is None or _better(value, self.best, HIGHER_IS_BETTER[self.metric])):
            self.best, self.best_step, self.bad = value, step, 0
            return True
        self.bad += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.bad >= self.patience

    def state_dict(self) -> dict:
        return {"best": self.best, "best_step": self.best_step, "bad": self.bad}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_step, self.bad = state["best"], state["best_step"], state["bad"]


# --- data ------------------------------------------------------------------------

@dataclass
class Data:
    """Codecs, encoded examples and the training batch sampler."""

    src_codec: Any
    tgt_codec: Any
    train: list[Example]
    valid: list[Example]
    valid_pairs: list[tuple[str, str]]
    sampler: BatchSampler


def build_data(cfg: Config, workdir: Path, codecs: tuple | None = None) -> Data:
    """Corpus -> tokenizers/vocabularies (or the given ones, on resume) -> examples -> sampler."""
    from .corpora import load_splits
    from .vocab import build_codecs

    splits = load_splits(cfg.data)
    src_codec, tgt_codec = codecs or build_codecs(cfg.tokenizer, splits.train, workdir)
    train, dropped = filter_long(encode_pairs(splits.train, src_codec, tgt_codec), cfg.data.max_len)
    if not train:
        raise DataError(f"no training pair is left after dropping {dropped} longer than "
                        f"data.max_len={cfg.data.max_len} tokens")
    valid = encode_pairs(splits.valid, src_codec, tgt_codec)
    valid_keep = [i for i, ex in enumerate(valid) if ex.src_ids]
    t = cfg.train
    sampler = BatchSampler(example_sizes(train), t.batch_tokens, t.batch_sentences, shuffle=True, seed=t.seed)
    return Data(src_codec, tgt_codec, train, [valid[i] for i in valid_keep],
                [splits.valid[i] for i in valid_keep], sampler)


def make_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    """Adam / AdamW / SGD from the config."""
    params = list(params)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def _mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers (splitmix-style mixing)."""
    x = 0x9E3779B97F4A7C15
    for p in parts:
        x = (x ^ (p & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 31
    return x & 0x7FFFFFFFFFFFFFFF


@dataclass
class Interval:
    """Training statistics summed since the last train log record."""

    loss: float = 0.0
    nll: float = 0.0
    tokens: int = 0
    correct: int = 0
    steps: int = 0
    grad_norm: float = float("nan")
    start: float = field(default_factory=time.perf_counter)


# --- the trainer -------------------------------------------------------------------

class Trainer:
    """Owns the model, optimizer, schedules and counters of one training run."""

    def __init__(self, cfg: Config, out_dir: str | Path, resume: bool = False):
        self.cfg, self.t, self.out = cfg, cfg.train, Path(out_dir)
        self.ckdir = self.out / "checkpoints"
        self.device = resolve_device(self.t.device, int(os.environ.get("LOCAL_RANK", "0")), key="train.device")
        self.dist = init_distributed(self.device)
        start = self._find_resume() if resume else self._check_fresh()
        codecs = (start.src_codec, start.tgt_codec) if start else None
        self.data = build_data(cfg, self.out, codecs)
        self.raw = self._build_model(start)
        self.model = self._wrap(self.raw)
        self.optimizer = make_optimizer(self.t, self.raw.parameters())
        self.schedule = LRSchedule(self.t)
        self.early = EarlyStopping(self.t.early_stop_metric, self.t.patience)
        self.precision = resolve_precision(self.device, self.t.precision)
        if self.t.precision == "auto":
            self._info(f"precision auto: {self.precision} on {self.device}")
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.generator = torch.Generator(device=self.device)
        self.step, self.epoch, self.pos, self.tokens_seen, self.elapsed = 0, 0, 0, 0, 0.0
        self.best_list: list[list] = []  # [value, step] of the kept best-N folders
        self.last_valid: dict = {}
        self.tf_logged: float | None = None
        self.stop_requested = self.interrupted = self.stopped_early = False
        self._epoch_cache: tuple[int, list[list[int]]] | None = None
        self._writer = None
        if start:
            self._restore(start)

    # -- set-up -------------------------------------------------------------
    def _check_fresh(self) -> None:
        if any(self.ckdir.glob("step-*")):
            raise UserError(f"{self.out} already holds a training run; resume it "
                            f"(transduce train --resume {self.out}) or choose another --out")
        return None

    def _find_resume(self) -> ck.Loaded:
        """The newest checkpoints/step-N that loads (older ones are tried on errors)."""
        found = sorted(self.ckdir.glob("step-*"), key=lambda p: _step_of(p), reverse=True)
        if not found:
            raise UserError(f"cannot resume: no checkpoint in {self.ckdir}")
        for folder in found:
            try:
                loaded = ck.load_model(folder, "cpu")
                loaded.training = ck.load_training_state(folder, "cpu")
                loaded.folder = folder
                return loaded
            except CheckpointError as exc:
                self._info(f"skipping checkpoint {folder}: {exc}")
        raise CheckpointError(f"cannot resume: no loadable checkpoint in {self.ckdir}")

    def _build_model(self, start: ck.Loaded | None) -> nn.Module:
        from .model import Seq2Seq

        if start is not None:
            if start.config.model != self.cfg.model:
                raise ConfigError(f"cannot change the model.* settings when resuming {self.out}")
            model = start.model
        else:
            torch.manual_seed(self.t.seed)
            model = Seq2Seq.from_config(self.cfg.model, len(self.data.src_codec.vocab),
                                        len(self.data.tgt_codec.vocab))
        describe = getattr(model, "describe", None)
        self._info(describe() if describe else f"{model.num_parameters():,} parameters")
        return model.to(self.device).train()

    def _wrap(self, model: nn.Module) -> nn.Module:
        if not self.dist.enabled:
            return model
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DDP(model, device_ids=ids)

    def _info(self, msg: str) -> None:
        if self.dist.main:
            _say(msg)

    # -- state ----------------------------------------------------------------
    def training_state(self, rng: tuple[dict, dict] | None = None) -> ck.TrainingState:
        plain, tensors = rng or ck.capture_rng()
        tensors = dict(tensors, tf_generator=self.generator.get_state())
        state = {"step": self.step, "epoch": self.epoch, "pos": self.pos, "tokens_seen": self.tokens_seen,
                 "elapsed": self.elapsed, "schedule": self.schedule.state_dict(),
                 "early": self.early.state_dict(), "best_list": self.best_list,
                 "scaler": self.scaler.state_dict(), "last_valid": self.last_valid,
                 "tf_logged": self.tf_logged, "rng": plain, "world_size": self.dist.world}
        return ck.TrainingState(self.optimizer.state_dict(), state, tensors)

    def _restore(self, start: ck.Loaded) -> None:
        tr = start.training
        s = tr.state
        self.optimizer.load_state_dict(tr.optimizer)
        self.schedule.load_state_dict(s["schedule"])
        self.early.load_state_dict(s["early"])
        if s["scaler"]:
            self.scaler.load_state_dict(s["scaler"])
        self.step, self.epoch, self.pos = s["step"], s["epoch"], s["pos"]
        self.tokens_seen, self.elapsed, self.best_list = s["tokens_seen"], s["elapsed"], s["best_list"]
        self.last_valid, self.tf_logged = s["last_valid"], s["tf_logged"]
        self.generator.set_state(tr.tensors["tf_generator"].cpu())
        ck.restore_rng(s["rng"], tr.tensors)
        if self.dist.main:
            _truncate_log(self.out / "log.jsonl", self.step)
        self._info(f"resumed from {start.folder} at step {self.step} (epoch {self.epoch}, batch {self.pos})")

    # -- batches ----------------------------------------------------------------
    def _epoch_batches(self) -> list[list[int]]:
        if self._epoch_cache is None or self._epoch_cache[0] != self.epoch:
            self._epoch_cache = (self.epoch, self.data.sampler.epoch_batches(self.epoch))
        return self._epoch_cache[1]

    def next_group(self) -> list[list[int]] | None:
        """The batches (index lists) of the next update, all ranks; None when the epochs are done."""
        need, world = self.t.accum_steps * self.dist.world, self.dist.world
        for _ in range(2):
            if self.t.max_epochs is not None and self.epoch >= self.t.max_epochs:
                return None
            group = self._epoch_batches()[self.pos:self.pos + need]
            usable = len(group) - len(group) % world
            if usable:
                return group[:usable]
            self.epoch, self.pos = self.epoch + 1, 0
        raise DataError(f"the training data gives fewer than {world} batches per epoch "
                        f"({len(self.data.train)} pairs); lower train.batch_tokens")

    def _tokens(self, indices: list[int]) -> int:
        return sum(len(self.data.train[i].tgt_ids) + 1 for i in indices)

    # -- one update -----------------------------------------------------------------
    def _autocast(self):
        return autocast(self.device, self.precision)

    def forward(self, batch, ratio: float):
        """Logits [B, T, V] for a batch at teacher-forcing ratio ``ratio``."""
        temp = self.t.sample_temperature
        if ratio >= 1.0:
            return self.model(batch.src, batch.src_lengths, batch.tgt_in).logits
        if self.t.tf_two_pass and self.raw.supports_fused:
            mixed = two_pass_inputs(self.raw, batch, ratio, temp, self.generator)
            return self.model(batch.src, batch.src_lengths, mixed).logits
        nxt = make_next_input(ratio, temp, self.generator)
        return self.model(batch.src, batch.src_lengths, batch.tgt_in, next_input=nxt).logits

    def _reseed(self) -> None:
        torch.manual_seed(_mix_seed(self.t.seed, self.step, self.dist.rank))
        self.generator.manual_seed(_mix_seed(self.t.seed + 1, self.step, self.dist.rank))

    def train_step(self, group: list[list[int]], ratio: float, stats: Interval) -> None:
        """Forward/backward over this rank's micro-batches of ``group``, then one update."""
        self._reseed()
        n_global = sum(self._tokens(b) for b in group)
        mine = group[self.dist.rank::self.dist.world]
        for i, indices in enumerate(mine):
            batch = collate(self.data.train, indices).to(self.device)
            last = i == len(mine) - 1
            with nullcontext() if last or not self.dist.enabled else self.model.no_sync():
                with self._autocast():
                    logits = self.forward(batch, ratio)
                out = masked_cross_entropy(logits, batch.tgt_out, self.t.label_smoothing)
                self.scaler.scale(out.loss_sum * (self.dist.world / n_global)).backward()
            stats.loss += float(out.loss_sum.detach())
            stats.nll += float(out.nll_sum)
            stats.tokens += out.n_tokens
            stats.correct += out.n_correct
        stats.grad_norm = self._update()
        stats.steps += 1
        self.tokens_seen += n_global

    def _update(self) -> float:
        self.scaler.unscale_(self.optimizer)
        norm = float("nan")
        if self.t.clip_norm:
            norm = float(torch.nn.utils.clip_grad_norm_(self.raw.parameters(), self.t.clip_norm))
        lr = self.schedule.lr_at(self.step)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        self._updating = True  # until the counters move (see _stop_on_interrupt)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return norm

    # -- validation -----------------------------------------------------------------
    def validate(self) -> dict:
        """Validation metrics (rank 0 computes, every rank receives); {} without a valid split."""
        metrics: dict = {}
        if self.dist.main and self.data.valid:
            was = self.raw.training
            self.raw.eval()
            devices = [self.device.index or 0] if self.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices), torch.no_grad(), self._autocast():
                metrics = {**self._valid_loss(), **self._valid_decode()}
            self.raw.train(was)
        if self.dist.enabled:
            box = [metrics]
            dist.broadcast_object_list(box, src=0)
            metrics = box[0]
        return metrics

    def _valid_loss(self) -> dict:
        """Teacher-forced loss (plain NLL per token), perplexity, token accuracy (%)."""
        valid = self.data.valid
        sampler = BatchSampler(example_sizes(valid), self.t.batch_tokens, self.t.batch_sentences, shuffle=False)
        nll, tokens, correct = 0.0, 0, 0
        for indices in sampler.epoch_batches(0):
            batch = collate(valid, indices).to(self.device)
            out = masked_cross_entropy(self.raw(batch.src, batch.src_lengths, batch.tgt_in).logits, batch.tgt_out)
            nll, tokens, correct = nll + float(out.nll_sum), tokens + out.n_tokens, correct + out.n_correct
        return {"loss": nll / tokens, "ppl": perplexity(nll, tokens),
                "accuracy": 100.0 * token_accuracy(correct, tokens)}

    def _valid_decode(self) -> dict:
        """Greedy decoding of the first valid_max_sentences sentences, scored (metrics.py)."""
        from .metrics import score_texts
        from .search import greedy

        n = len(self.data.valid)
        if self.t.valid_max_sentences is not None:
            n = min(n, self.t.valid_max_sentences)
        if n == 0:
            return {}
        examples, s = self.data.valid[:n], self.cfg.search
        sampler = BatchSampler(example_sizes(examples), batch_sentences=s.batch_size, shuffle=False)
        hyps = [""] * n
        for indices in sampler.epoch_batches(0):
            batch = collate(examples, indices).to(self.device)
            found = greedy(self.raw, batch.src, batch.src_lengths, s.max_len_a, s.max_len_b, s.min_len,
                           return_attention=False)
            for i, hyp in zip(indices, found):
                hyps[i] = self.data.tgt_codec.decode(hyp.tokens)
        refs = [tgt for _, tgt in self.data.valid_pairs[:n]]
        scores = score_texts(hyps, refs, DECODE_METRICS)
        return {k: v for k, v in scores.items() if not k.endswith("_signature")}

    def validate_and_save(self) -> None:
        """Validate, update early stopping / plateau, log, write checkpoints."""
        metrics = self.validate()
        self.last_valid = metrics
        improved = True
        name = self.t.early_stop_metric
        if metrics:
            improved = self.early.update(metrics[name], self.step)
            if self.schedule.observe(metrics[name], HIGHER_IS_BETTER[name]):
                self._info(f"step {self.step}: {name} did not improve, lr scale now {self.schedule.scale:g}")
            self._log({"split": "valid", **metrics})
            shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items())
            self._info(f"step {self.step} valid: {shown}{' (best)' if improved else ''}")
        self.save(improved)
        self._validated_at = self.step
        if self.early.should_stop:
            self.stopped_early = True
            self._info(f"early stop: {name} did not improve for {self.early.bad} validations "
                       f"(best {self.early.best:.4g} at step {self.early.best_step})")

    # -- checkpoints -------------------------------------------------------------------
    def _meta(self) -> dict:
        return {"step": self.step, "epoch": self.epoch, "metrics": self.last_valid,
                "best": {"metric": self.t.early_stop_metric, "value": self.early.best,
                         "step": self.early.best_step}}

    def save(self, improved: bool) -> None:
        """Write checkpoints/step-N (and the best model folders when ``improved``); rank 0 only."""
        self.dist.barrier()
        if self.dist.main:
            codecs = (self.data.src_codec, self.data.tgt_codec)
            if improved:
                self._save_best(codecs)
            ck.save_checkpoint(self.ckdir / f"step-{self.step}", self.raw, self.cfg, *codecs,
                               self._meta(), self.training_state())
            _prune(self.ckdir, "step-", max(1, self.t.keep_last), keep=self.step)
        self.dist.barrier()

    def _save_best(self, codecs: tuple) -> None:
        ck.save_model(self.out, self.raw, self.cfg, *codecs, self._meta())
        if not self.last_valid or self.t.keep_best < 1:
            return
        ck.save_model(self.ckdir / f"best-{self.step}", self.raw, self.cfg, *codecs, self._meta())
        self.best_list = [b for b in self.best_list if b[1] != self.step] + [[self.early.best, self.step]]
        higher = HIGHER_IS_BETTER[self.t.early_stop_metric]
        self.best_list.sort(key=lambda b: (-b[0] if higher else b[0], -b[1]))
        for _, step in self.best_list[self.t.keep_best:]:
            _remove_tree(self.ckdir / f"best-{step}")
        self.best_list = self.best_list[:self.t.keep_best]

    # -- logging ------------------------------------------------------------------------
    def _log(self, record: dict) -> None:
        if not self.dist.main:
            return
        record = {"step": self.step, **{k: _finite(v) for k, v in record.items()},
                  "time": round(self.elapsed, 3)}
        with open(self.out / "log.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        writer = self._tensorboard()
        if writer is not None:
            for key, value in record.items():
                if key not in ("step", "split", "time", "epoch") and isinstance(value, (int, float)):
                    writer.add_scalar(f"{record['split']}/{key}", value, self.step)

    def _tensorboard(self):
        if self._writer is None and self.t.tensorboard and self.dist.main:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.out / "tensorboard"))
        return self._writer

    def _note_ratio(self, ratio: float) -> None:
        """Log the teacher-forcing ratio when it changes."""
        writer = self._tensorboard()
        if writer is not None and ratio != getattr(self, "_tb_ratio", None):
            writer.add_scalar("train/tf_ratio", ratio, self.step)
            self._tb_ratio = ratio
        if self.tf_logged is None or abs(ratio - self.tf_logged) >= 0.01:
            self._log({"split": "train", "tf_ratio": ratio})
            self.tf_logged = ratio

    def _log_train(self, stats: Interval, ratio: float) -> None:
        seconds = max(1e-9, time.perf_counter() - stats.start)
        self._log({"split": "train", "epoch": self.epoch, "loss": stats.loss / max(1, stats.tokens),
                   "ppl": perplexity(stats.nll, stats.tokens),
                   "accuracy": 100.0 * token_accuracy(stats.correct, stats.tokens),
                   "lr": self.optimizer.param_groups[0]["lr"], "tf_ratio": ratio,
                   "tok_per_s": stats.tokens * self.dist.world / seconds, "grad_norm": stats.grad_norm})

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> dict:
        """Train until max_steps / max_epochs / early stop / Ctrl-C; returns the summary."""
        if self.dist.main:
            self.out.mkdir(parents=True, exist_ok=True)
            if not (self.out / ck.CONFIG).exists():
                ck.atomic_write_text(self.out / ck.CONFIG, self.cfg.to_yaml())
        self._validated_at = self.step if self.step else None
        with self._sigint(), self._progress() as bar:
            try:
                self._loop(bar)
            except KeyboardInterrupt:
                self.interrupted = True
        if self.interrupted or self.stop_requested:
            return self._stop_on_interrupt()
        if self._validated_at != self.step:
            self.validate_and_save()
        return self.summary()

    def _loop(self, bar) -> None:
        stats, t0, base = Interval(), time.perf_counter(), self.elapsed
        while self.step < self.t.max_steps and not (self.stop_requested or self.stopped_early):
            group = self.next_group()
            if group is None:
                break
            ratio = teacher_forcing_ratio(self.t, self.step)
            self._note_ratio(ratio)
            self.train_step(group, ratio, stats)
            self.pos, self.step = self.pos + len(group), self.step + 1
            self._updating = False
            self.elapsed = base + time.perf_counter() - t0
            bar.update(1)
            if self.step % self.t.log_every == 0 or self.step == self.t.max_steps:
                bar.set_postfix(loss=f"{stats.loss / max(1, stats.tokens):.3f}",
                                tok_s=f"{stats.tokens * self.dist.world / max(1e-9, time.perf_counter() - stats.start):.0f}")
                self._log_train(stats, ratio)
                stats = Interval()
            if self.step % self.t.valid_every == 0:
                self.validate_and_save()

    def _stop_on_interrupt(self) -> dict:
        self.optimizer.zero_grad(set_to_none=True)
        if getattr(self, "_updating", False):
            self._info("interrupted inside an optimizer update: no checkpoint written; "
                       f"resume from the last one with: transduce train --resume {self.out}")
        else:
            self.save(improved=not self.data.valid and self.dist.main)
            self._info(f"interrupted at step {self.step}: checkpoint saved in {self.ckdir / f'step-{self.step}'}; "
                       f"resume with: transduce train --resume {self.out}")
        summary = self.summary()
        summary["resume"] = f"transduce train --resume {self.out}"
        return summary

    @contextmanager
    def _sigint(self) -> Iterator[None]:
        """First Ctrl-C: finish the current update, save, stop. Second: abort at once."""
        import threading

        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum, frame):
            if self.stop_requested:
                raise KeyboardInterrupt
            self.stop_requested = True
            _say("stopping after this update and saving a checkpoint (Ctrl-C again to abort now)")

        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def _progress(self):
        from tqdm import tqdm

        show = self.t.progress and self.dist.main and sys.stderr.isatty()
        return tqdm(total=self.t.max_steps, initial=self.step, disable=not show, unit="step",
                    dynamic_ncols=True, desc="train")

    def summary(self) -> dict:
        return {"out_dir": str(self.out), "steps": self.step, "epochs": self.epoch,
                "tokens": self.tokens_seen, "time_s": round(self.elapsed, 3),
                "parameters": self.raw.num_parameters(), "best_metric": self.t.early_stop_metric,
                "best": self.early.best, "best_step": self.early.best_step, "valid": self.last_valid,
                "interrupted": self.interrupted or self.stop_requested, "stopped_early": self.stopped_early}

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self.dist.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def train(cfg: Config, out_dir: str | Path, resume: bool = False) -> dict:
    """Train ``cfg`` into ``out_dir`` (resume the run there when ``resume``); returns a summary."""
    trainer = Trainer(cfg, out_dir, resume)
    try:
        return trainer.run()
    finally:
        trainer.close()


# --- helpers ----------------------------------------------------------------------------

def _step_of(path: Path) -> int:
    try:
        return int(path.name.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return -1


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _prune(folder: Path, prefix: str, n: int, keep: int) -> None:
    """Remove all but the newest ``n`` ``prefix<step>`` folders (never step ``keep``)."""
    found = sorted((p for p in folder.glob(f"{prefix}*") if _step_of(p) >= 0), key=_step_of, reverse=True)
    for path in found[n:]:
        if _step_of(path) != keep:
            _remove_tree(path)


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _truncate_log(path: Path, step: int) -> None:
    """Drop log records written after ``step`` (they belong to the lost part of a run)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                kept.append(line)
        except ValueError:
            continue
    ck.atomic_write_text(path, "".join(f"{line}\n" for line in kept))
