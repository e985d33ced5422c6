"""Translate text with a trained model: lists, streams, evaluation.

``Translator`` wraps a model and its two codecs (tokenizer + vocabulary per
side). ``translate(texts, options)`` tokenizes, sorts the inputs by length,
decodes in batches of ``options.batch_size`` sentences, detokenizes and
returns the results in input order. ``options`` is a ``config.DecodeOptions``
(default: the model's own ``config.search``); keyword arguments change single
options (``translate(texts, beam=5, nbest=2)``). Used alike by ``transduce
translate``, ``evaluate``, ``serve`` and the trainer's validation, which also
shares :meth:`Translator.likelihood` (teacher-forced NLL) with ``evaluate``.

* Empty inputs (nothing after tokenization) give an empty Translation
  (``text == ""``, score 0.0) without running the model.
* Over-long inputs: sources longer than ``max_src_len`` tokens (default
  ``2 * cfg.data.max_len``, the training length limit with room to spare) are
  cut to their first ``max_src_len`` tokens; ``Translation.truncated`` is set
  and a ``UserWarning`` is issued once per Translator.
* Precision: ``fp32``; ``bf16`` (CPU or CUDA; on a CPU without AMX/AVX512-BF16 it
  is much slower than fp32, see :mod:`transduce.device`): a Translator that owns its
  model (:meth:`Translator.from_dir`) casts the weights to bf16 once and runs
  without autocast (log-probabilities, attention softmax and scores stay fp32),
  one over a shared model (validation during training) runs under
  ``torch.autocast``, which re-casts weights at every call; ``fp16``
  (autocast, CUDA only); ``auto`` (bf16 where the device has native bf16,
  else fp32: :func:`transduce.device.resolve_precision`); ``int8`` (CPU only: a copy of the model with
  ``torch.ao.quantization.quantize_dynamic``, qint8 weights, on every
  nn.Linear, nn.LSTM and nn.GRU; nn.RNN (tanh) and the embeddings stay fp32,
  see :func:`quantize_int8`).
* Decoding runs under ``torch.inference_mode`` with the model in eval mode
  (its previous train/eval mode is restored afterwards).
* Rescoring: a model folder with rescorers (``transduce ensemble RUN --rescore
  OTHER``, e.g. a right-to-left model of ``tokenizer.reverse_target``) keeps the
  whole beam of each sentence, adds ``rescore_weight`` times the rescorers' mean
  log-probability of each hypothesis (teacher forced on its text, :meth:`score`;
  length-normalised like the beam's score) and re-ranks by that sum. Greedy
  decoding and sampling are not rescored.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import torch
from torch import nn
from tqdm import tqdm

from . import search
from .batching import Example, collate
from .checkpoint import WEIGHTS, load_model
from .config import Config, DecodeOptions
from .device import autocast, resolve_device, resolve_precision
from .errors import UserError
from .loss import masked_cross_entropy, token_accuracy, token_losses
from .metrics import METRICS, perplexity, score_texts
from .runfolder import saved_steps
from .vocab import PAD

OPTION_NAMES = tuple(f.name for f in dataclasses.fields(DecodeOptions))


@dataclass
class Translation:
    """One input's result. ``tokens`` are the output's pieces in the order the model wrote
    them (right to left for a ``tokenizer.reverse_target`` model); ``attention`` is
    [len(tokens)][len(src_tokens)] if asked."""

    text: str
    score: float
    tokens: list[str]
    src_tokens: list[str]
    attention: list[list[float]] | None = None
    nbest: list[tuple[str, float]] = field(default_factory=list)
    logprob: float = 0.0
    truncated: bool = False
    source: str = ""
    """The input text as given."""


@dataclass
class Likelihood:
    """Teacher-forced sums over target tokens (EOS included)."""

    nll_sum: float = 0.0
    n_tokens: int = 0
    n_correct: int = 0

    @property
    def loss(self) -> float:
        """Mean negative log-likelihood per token (nan without tokens)."""
        return self.nll_sum / self.n_tokens if self.n_tokens else math.nan

    @property
    def ppl(self) -> float:
        return perplexity(self.nll_sum, self.n_tokens)

    @property
    def accuracy(self) -> float:
        """Percent of tokens whose argmax is the reference token."""
        return 100.0 * token_accuracy(self.n_correct, self.n_tokens)


def prepare_model(model: nn.Module, device: torch.device, precision: str,
                  cast: bool = False) -> nn.Module:
    """Move ``model`` to ``device`` (in place); for int8 return a quantized copy; with
    ``cast`` and bf16, cast its weights to bf16 (in place). ``precision`` is already
    resolved (:func:`transduce.device.resolve_precision`)."""
    if precision == "int8":
        return quantize_int8(model.to("cpu"))
    if cast and precision == "bf16":
        return model.to(device=device, dtype=torch.bfloat16)
    return model.to(device)


def quantize_int8(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with dynamic int8 weights for every nn.Linear,
    nn.LSTM and nn.GRU (torch has no dynamic int8 tanh RNN). The quantized
    decoder RNN has no raw weights for the fused cell kernels, so its step
    runs the module on a length-1 sequence (rnn.run_step). Speed and BLEU of
    int8 against fp32: bench/bench_inference.py, figures in bench/RESULTS.md."""
    from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic  # deprecated module: int8 only

    spec = {name: default_dynamic_qconfig for name, m in model.named_modules()
            if isinstance(m, (nn.Linear, nn.LSTM, nn.GRU))}
    with warnings.catch_warnings():  # torch.ao.quantization is deprecated in favour of torchao
        warnings.simplefilter("ignore")
        return quantize_dynamic(model, spec, dtype=torch.qint8)


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """Eval mode inside the block; the previous mode is restored after."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def model_folder(path: str | Path) -> Path:
    """``path`` when it holds a model; for a training run stopped before its first
    validation (no model at its root yet) its newest ``checkpoints/step-N``, with a
    UserWarning saying so."""
    path = Path(path)
    steps = [] if (path / WEIGHTS).is_file() else saved_steps(path)
    if not steps:
        return path
    warnings.warn(f"{path} has no best model yet (stopped before its first validation); "
                  f"using its newest checkpoint {steps[-1]}", UserWarning, stacklevel=3)
    return steps[-1]


def _check_texts(texts) -> list[str]:
    """``texts`` as a list of str; TypeError naming the culprit otherwise."""
    if isinstance(texts, (str, bytes)):
        raise TypeError(f"texts must be a list of strings, not a single {type(texts).__name__}: "
                        f"use translate([text])")
    try:
        texts = list(texts)
    except TypeError:
        raise TypeError(f"texts must be a list of strings, got {type(texts).__name__}") from None
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] must be a str, got {type(text).__name__}")
    return texts


@dataclass
class Source:
    """A tokenized input: pieces and ids aligned one to one."""

    pieces: list[str]
    ids: list[int]
    truncated: bool = False
    text: str = ""


class Translator:
    """A model plus its codecs, ready to translate (see the module docstring)."""

    def __init__(self, model: nn.Module, config: Config, src_codec, tgt_codec,
                 device: str | torch.device = "cpu", precision: str = "fp32",
                 max_src_len: int | None = None, own_model: bool = False,
                 rescorers: Sequence["Translator"] = ()):
        """``own_model``: the Translator may change the model's weights' dtype (bf16);
        ``rescorers``: Translators that re-rank the beam (module docstring)."""
        self.device = resolve_device(device)
        self.precision = resolve_precision(self.device, precision)
        self.model = prepare_model(model, self.device, self.precision, cast=own_model)
        cast = own_model and self.precision == "bf16"
        self._autocast = "fp32" if cast else self.precision
        self.config = config
        self.src_codec, self.tgt_codec = src_codec, tgt_codec
        self.max_src_len = max_src_len or 2 * config.data.max_len
        self._warned = False
        self.rescorers = list(rescorers)

    @classmethod
    def from_dir(cls, model_dir: str | Path, device: str | torch.device = "cpu",
                 precision: str = "fp32", max_src_len: int | None = None) -> "Translator":
        """Load a model folder (``checkpoint.load_model``; a run stopped before its first
        validation: its newest step checkpoint, see :func:`model_folder`); CheckpointError
        if it is broken."""
        loaded = load_model(model_folder(model_dir), device=resolve_device(device))
        rescorers = [cls(r.model, r.config, r.src_codec, r.tgt_codec, device, precision, own_model=True)
                     for r in loaded.rescorers]
        return cls(loaded.model, loaded.config, loaded.src_codec, loaded.tgt_codec, device,
                   precision, max_src_len, own_model=True, rescorers=rescorers)

    # --- options -------------------------------------------------------------

    def options(self, base: DecodeOptions | None = None, **changes) -> DecodeOptions:
        """``base`` (default: the model's ``config.search``) with ``changes`` applied,
        e.g. ``options(beam=5, nbest=2)``; ConfigError for a bad value, TypeError for
        a name that is not a DecodeOptions field."""
        unknown = sorted(set(changes) - set(OPTION_NAMES))
        if unknown:
            raise TypeError(f"unknown decoding option(s) {', '.join(unknown)} "
                            f"(known: {', '.join(OPTION_NAMES)})")
        base = self.config.search if base is None else base
        return dataclasses.replace(base, **changes) if changes else base

    def translate(self, texts: Sequence[str], options: DecodeOptions | None = None,
                  generator: torch.Generator | None = None, **changes) -> list[Translation]:
        """Translate ``texts``, results in input order. Options: ``options`` (default:
        the model's ``config.search``) with keyword ``changes`` (DecodeOptions fields)
        on top. Sampling draws from ``generator`` (default: one seeded by ``seed``)."""
        opts = self.options(options, **changes)
        if generator is None and opts.method == "sample":
            generator = self.generator(opts.seed)
        sources = self.tokenize(_check_texts(texts))
        results: list[Translation | None] = [None] * len(sources)
        for idx in self._batches(sources, opts.batch_size):
            for i, tr in zip(idx, self.decode_sources([sources[i] for i in idx], opts, generator)):
                results[i] = tr
        for i, src in enumerate(sources):
            if results[i] is None:  # empty input: n-best empty outputs, no model run
                results[i] = Translation("", 0.0, [], [], [] if opts.return_attention else None,
                                         [("", 0.0)] * opts.nbest, 0.0, False, src.text)
        return results

    def translate_stream(self, lines: Iterable[str], options: DecodeOptions | None = None,
                         chunk_size: int | None = None, **changes) -> Iterator[Translation]:
        """Translate an iterable of lines (trailing newlines stripped), yielding
        results in order. ``chunk_size`` lines (default 16 batches) are read,
        decoded and yielded at a time (1 for interactive use). Options as for
        :meth:`translate`; sampling draws from one generator for the whole stream."""
        opts = self.options(options, **changes)
        chunk_size = chunk_size or 16 * opts.batch_size
        generator = self.generator(opts.seed) if opts.method == "sample" else None
        buffer: list[str] = []
        for line in lines:
            buffer.append(line.rstrip("\r\n"))
            if len(buffer) >= chunk_size:
                yield from self.translate(buffer, opts, generator)
                buffer = []
        if buffer:
            yield from self.translate(buffer, opts, generator)

    # --- internals -------------------------------------------------------------

    def generator(self, seed: int | None) -> torch.Generator:
        """A sampling generator on the device, seeded with ``seed`` (None: a random seed)."""
        gen = torch.Generator(device=self.device)
        if seed is None:
            gen.seed()
        else:
            gen.manual_seed(seed)
        return gen

    def tokenize(self, texts: list[str]) -> list[Source]:
        """Pieces and ids per text, sources cut to max_src_len (warned once)."""
        piece_lists = self.src_codec.tokenizer.encode_batch(texts)
        sources, n_cut = [], 0
        for text, pieces in zip(texts, piece_lists):
            cut = len(pieces) > self.max_src_len
            pieces = pieces[:self.max_src_len]
            n_cut += cut
            sources.append(Source(pieces, self.src_codec.vocab.encode(pieces), cut, text))
        if n_cut and not self._warned:
            self._warned = True
            warnings.warn(f"{n_cut} input(s) longer than {self.max_src_len} tokens were cut to "
                          f"{self.max_src_len} tokens (max_src_len; this warning is shown once)",
                          UserWarning, stacklevel=3)
        return sources

    @staticmethod
    def _batches(sources: list[Source], size: int) -> list[list[int]]:
        """Indices of non-empty sources, longest first, in batches of ``size``."""
        order = sorted((i for i, s in enumerate(sources) if s.ids), key=lambda i: -len(sources[i].ids))
        return [order[k:k + size] for k in range(0, len(order), size)]

    def _pad(self, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows of ids -> (src [B, S] padded with PAD, lengths [B]) on the device."""
        width = max(len(r) for r in rows)
        src = torch.tensor([r + [PAD] * (width - len(r)) for r in rows], dtype=torch.long)
        lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
        return src.to(self.device), lengths.to(self.device)

    @contextlib.contextmanager
    def _running(self):
        """Inference mode, the model in eval mode, the Translator's precision."""
        with torch.inference_mode(), eval_mode(self.model), autocast(self.device, self._autocast):
            yield

    def decode_sources(self, batch: list[Source], opts: DecodeOptions,
                       generator: torch.Generator | None = None,
                       tree: search.BeamTree | None = None) -> list[Translation]:
        """Decode one model batch of tokenized, non-empty sources (:meth:`tokenize`) with
        ``opts``; ``tree`` records a beam search (the server's batching calls this)."""
        src, lengths = self._pad([s.ids for s in batch])
        rescoring = bool(self.rescorers) and opts.method == "beam" and opts.rescore_weight > 0
        with self._running():
            hyps = search.decode(self.model, src, lengths,
                                 dataclasses.replace(opts, nbest=opts.beam) if rescoring else opts,
                                 generator, tree)
        if rescoring:
            hyps = [h[:opts.nbest] for h in self._rescore(hyps, batch, opts)]
        return [self._translation(h, s, opts) for h, s in zip(hyps, batch)]

    def _rescore(self, hyps: list[list[search.Hyp]], batch: list[Source],
                 opts: DecodeOptions) -> list[list[search.Hyp]]:
        """Each sentence's Hyps re-ranked by score + rescore_weight * the rescorers' mean
        log-probability of the Hyp's text (length-normalised as ``opts`` says); the
        Hyps' scores become those sums."""
        sources = [s.text for s, hs in zip(batch, hyps) for _ in hs]
        targets = [self.tgt_codec.decode(h.tokens) for hs in hyps for h in hs]
        extra = torch.zeros(len(targets))
        for rescorer in self.rescorers:
            extra += torch.tensor([logprob for logprob, _ in rescorer.score(sources, targets)])
        lengths = torch.tensor([len(h.tokens) + 1 for hs in hyps for h in hs])  # EOS included, as search
        extra = search.length_normalise(extra / len(self.rescorers), lengths, opts.length_penalty, opts.alpha)
        out, k = [], 0
        for hs in hyps:
            ranked = [dataclasses.replace(h, score=h.score + opts.rescore_weight * float(extra[k + j]))
                      for j, h in enumerate(hs)]
            out.append(sorted(ranked, key=lambda h: -h.score))  # stable: the beam's order among ties
            k += len(hs)
        return out

    def _translation(self, hyps: list[search.Hyp], source: Source, opts: DecodeOptions) -> Translation:
        """Detokenize the n-best Hyps of one sentence."""
        best = hyps[0]
        pieces = self.tgt_codec.pieces(best.tokens)
        if opts.replace_unk:
            pieces = search.replace_unk(pieces, source.pieces, best.attention)
            text = self.tgt_codec.tokenizer.decode(pieces)
        else:
            text = self.tgt_codec.decode(best.tokens)
        nbest = [(text, best.score)] + [(self.tgt_codec.decode(h.tokens), h.score) for h in hyps[1:]]
        attention = None
        if opts.return_attention:
            attention = best.attention.tolist() if best.attention is not None else []
        return Translation(text, best.score, pieces, list(source.pieces), attention, nbest,
                           best.logprob, source.truncated, source.text)

    # --- teacher-forced likelihood ---------------------------------------------

    def likelihood(self, examples: Sequence[Example], batch_size: int | None = None) -> Likelihood:
        """Teacher-forced NLL, token count and argmax-correct count of encoded
        ``examples`` (EOS included; examples with an empty source skipped), in
        batches of ``batch_size`` sentences (default ``config.search.batch_size``).
        Used by :meth:`nll`, :func:`evaluate` and the trainer's validation."""
        keep = [i for i, ex in enumerate(examples) if ex.src_ids]
        keep.sort(key=lambda i: -len(examples[i].src_ids))
        size = batch_size or self.config.search.batch_size
        total = Likelihood()
        for k in range(0, len(keep), size):
            batch = collate(examples, keep[k:k + size]).to(self.device)
            with self._running():
                out = self.model(batch.src, batch.src_lengths, batch.tgt_in)
            loss = masked_cross_entropy(out.logits, batch.tgt_out)
            total.nll_sum += float(loss.nll_sum)
            total.n_tokens += loss.n_tokens
            total.n_correct += loss.n_correct
        return total

    def score(self, sources: Sequence[str], targets: Sequence[str]) -> list[tuple[float, int]]:
        """Per pair, the model's log-probability of ``target`` given ``source`` (teacher
        forced, EOS included) and its number of target tokens; (0.0, 0) for an empty source.
        A source repeated within a batch (a beam's hypotheses, when rescoring) is encoded once."""
        srcs = self.tokenize(_check_texts(sources))
        targets = _check_texts(targets)
        if len(srcs) != len(targets):
            raise UserError(f"{len(srcs)} sources but {len(targets)} targets")
        examples = [Example(s.ids, self.tgt_codec.encode(t)) for s, t in zip(srcs, targets)]
        out = [(0.0, 0)] * len(examples)
        for idx in self._batches(srcs, self.config.search.batch_size):
            batch = collate(examples, idx).to(self.device)
            firsts, rows = _distinct([srcs[i].ids for i in idx])
            firsts, rows = torch.tensor(firsts), torch.tensor(rows, device=self.device)
            with self._running():  # lengths stay on the CPU (packing wants them there)
                enc = self.model.encode(batch.src[firsts.to(self.device)], batch.src_lengths[firsts])
                logits = self.model.decode(enc.select(rows), batch.tgt_in).logits
            _, nll = token_losses(logits, batch.tgt_out)  # [B, T], 0 at padding
            counts = (batch.tgt_out != PAD).sum(1).tolist()
            for i, logprob, n in zip(idx, (-nll.sum(1)).tolist(), counts):
                out[i] = (logprob, n)
        return out

    def nll(self, sources: Sequence[str], references: Sequence[str]) -> Likelihood:
        """Teacher-forced likelihood of ``references`` given ``sources`` (see :meth:`likelihood`)."""
        if len(sources) != len(references):
            raise UserError(f"{len(sources)} sources but {len(references)} references")
        srcs = self.tokenize(list(sources))
        return self.likelihood([Example(s.ids, self.tgt_codec.encode(r))
                                for s, r in zip(srcs, references)])


def _distinct(rows: list[list[int]]) -> tuple[list[int], list[int]]:
    """(the index of each distinct row's first occurrence, each row's number among the distinct
    ones): rows == [rows[firsts[k]] for k in numbers]."""
    number: dict[tuple[int, ...], int] = {}
    firsts, numbers = [], []
    for i, row in enumerate(rows):
        key = tuple(row)
        if key not in number:
            number[key] = len(firsts)
            firsts.append(i)
        numbers.append(number[key])
    return firsts, numbers


def evaluate(translator: Translator, sources: Sequence[str], references: Sequence[str],
             metrics: Sequence[str] = ("bleu", "chrf", "wer", "per"),
             options: DecodeOptions | None = None, progress: bool = False) -> dict:
    """Translate ``sources`` with ``options`` (default: the model's) and score them
    against ``references`` (a tqdm bar on stderr when ``progress``).

    Returns {metric: value, "<metric>_signature": sacreBLEU signature (bleu,
    chrf), "sentences", "hypotheses": the output texts}; the metric ``ppl``
    adds the teacher-forced "ppl", "nll" and "n_tokens" of the references.
    """
    if len(sources) != len(references):
        raise UserError(f"{len(sources)} source lines but {len(references)} reference lines")
    unknown = [m for m in metrics if m not in METRICS and m != "ppl"]
    if unknown:
        raise UserError(f"unknown metric(s) {', '.join(unknown)} (known: {', '.join(METRICS)}, ppl)")
    decoded = [m for m in metrics if m != "ppl"]
    lines = tqdm(sources, desc="evaluate", unit="sent", disable=not progress)
    hyps = [t.text for t in translator.translate_stream(lines, options)]
    out = score_texts(hyps, list(references), decoded) if decoded else {}
    if "ppl" in metrics:
        lik = translator.nll(sources, references)
        out.update(ppl=lik.ppl, nll=lik.nll_sum, n_tokens=lik.n_tokens)
    out["sentences"] = len(sources)
    out["hypotheses"] = hyps
    return out
