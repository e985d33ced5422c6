"""Translate text with a trained model: lists, streams, evaluation.

``Translator`` wraps a model and its two codecs (tokenizer + vocabulary per
side). ``translate(texts)`` tokenizes, sorts the inputs by length, decodes in
batches of ``cfg.search.batch_size`` sentences, detokenizes and returns the
results in input order. Used alike by ``transduce translate``, ``evaluate``,
``serve`` and the trainer's validation decoding.

* Empty inputs (nothing after tokenization) give an empty Translation
  (``text == ""``, score 0.0) without running the model.
* Over-long inputs: sources longer than ``max_src_len`` tokens (default
  ``2 * cfg.data.max_len``, the training length limit with room to spare) are
  cut to their first ``max_src_len`` tokens; ``Translation.truncated`` is set
  and a ``UserWarning`` is issued once per Translator.
* Precision: ``fp32``; ``bf16`` (``torch.autocast``, CPU or CUDA; on a CPU
  without AMX/AVX512-BF16 it is much slower than fp32, see :mod:`transduce.device`); ``fp16``
  (autocast, CUDA only); ``auto`` (bf16 where the device has native bf16,
  else fp32: :func:`transduce.device.resolve_precision`); ``int8`` (CPU only: a copy of the model with
  ``torch.ao.quantization.quantize_dynamic``, qint8 weights, on every
  nn.Linear, nn.LSTM and nn.GRU; nn.RNN (tanh) and the embeddings stay fp32,
  see :func:`quantize_int8`).
* Decoding runs under ``torch.inference_mode`` with the model in eval mode
  (its previous train/eval mode is restored afterwards).
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import torch
from torch import nn

from . import search
from .config import Config
from .device import autocast, resolve_device, resolve_precision
from .errors import ConfigError, UserError

PRECISIONS = ("fp32", "bf16", "fp16", "int8", "auto")
METHODS = ("beam", "greedy", "sample")


@dataclass
class Translation:
    """One input's result. ``attention`` is [len(tokens)][len(src_tokens)] if asked."""

    text: str
    score: float
    tokens: list[str]
    src_tokens: list[str]
    attention: list[list[float]] | None = None
    nbest: list[tuple[str, float]] = field(default_factory=list)
    logprob: float = 0.0
    truncated: bool = False


@dataclass
class DecodeOptions:
    """Everything that decides how a batch is decoded (see :meth:`Translator.options`)."""

    method: str = "beam"
    beam: int = 5
    nbest: int = 1
    max_len_a: float = 1.5
    max_len_b: int = 10
    max_len: int | None = None
    min_len: int = 0
    length_penalty: str = "gnmt"
    alpha: float = 0.6
    coverage: float = 0.0
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int | None = None
    return_attention: bool = False
    replace_unk: bool = False

    def check(self) -> "DecodeOptions":
        """Raise UserError naming the first invalid option."""
        checks = [
            (self.method in METHODS, "method", f"must be one of {', '.join(METHODS)}"),
            (self.beam >= 1, "beam", "must be at least 1"),
            (1 <= self.nbest <= (self.beam if self.method == "beam" else 1), "nbest",
             "must be between 1 and the beam size (1 for greedy and sampling)"),
            (self.length_penalty in search.LENGTH_PENALTIES, "length_penalty",
             f"must be one of {', '.join(search.LENGTH_PENALTIES)}"),
            (self.min_len >= 0, "min_len", "must be >= 0"),
            (self.max_len is None or self.max_len >= 0, "max_len", "must be >= 0"),
            (self.coverage >= 0, "coverage", "must be >= 0"),
            (self.temperature >= 0, "temperature", "must be >= 0"),
            (self.top_k >= 0, "top_k", "must be >= 0"),
            (0 < self.top_p <= 1, "top_p", "must be in (0, 1]"),
        ]
        for ok, name, msg in checks:
            if not ok:
                raise UserError(f"decoding option '{name}' {msg} (got {getattr(self, name)!r})")
        return self


def prepare_model(model: nn.Module, device: torch.device, precision: str) -> nn.Module:
    """Move ``model`` to ``device`` (in place); for int8 return a quantized copy."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("precision 'fp16' needs a CUDA device; use bf16 or int8 on CPU")
    if precision == "int8":
        if device.type != "cpu":
            raise ConfigError(f"precision 'int8' runs on the CPU only, not on {device}")
        return quantize_int8(model.to("cpu"))
    return model.to(device)


def quantize_int8(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with dynamic int8 weights for every nn.Linear,
    nn.LSTM and nn.GRU (torch has no dynamic int8 tanh RNN). The quantized
    decoder RNN has no raw weights for the fused cell kernels, so its step
    runs the module on a length-1 sequence (rnn.run_step). Speed and BLEU of
    int8 against fp32: bench/bench_inference.py, figures in bench/RESULTS.md."""
    from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic

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


@dataclass
class _Source:
    """A tokenized input: pieces and ids aligned one to one."""

    pieces: list[str]
    ids: list[int]
    truncated: bool = False


class Translator:
    """A model plus its codecs, ready to translate (see the module docstring)."""

    def __init__(self, model: nn.Module, config: Config, src_codec, tgt_codec,
                 device: str | torch.device = "cpu", precision: str = "fp32",
                 max_src_len: int | None = None):
        self.device = resolve_device(device)
        self.precision = resolve_precision(self.device, precision)
        self.model = prepare_model(model, self.device, self.precision)
        self.config = config
        self.src_codec, self.tgt_codec = src_codec, tgt_codec
        self.max_src_len = max_src_len or 2 * config.data.max_len
        self._warned = False

    @classmethod
    def from_dir(cls, model_dir: str | Path, device: str | torch.device = "cpu",
                 precision: str = "fp32", max_src_len: int | None = None) -> "Translator":
        """Load a model folder (``checkpoint.load_model``); CheckpointError if it is broken."""
        from .checkpoint import load_model

        loaded = load_model(model_dir, device=resolve_device(device))
        return cls(loaded.model, loaded.config, loaded.src_codec, loaded.tgt_codec, device,
                   precision, max_src_len)

    # --- options -------------------------------------------------------------

    def options(self, beam: int | None = None, nbest: int = 1, max_len_a: float | None = None,
                max_len_b: int | None = None, min_len: int | None = None,
                length_penalty: str | None = None, alpha: float | None = None,
                coverage: float | None = None, method: str = "beam", temperature: float = 1.0,
                top_k: int = 0, top_p: float = 1.0, seed: int | None = None,
                return_attention: bool = False, max_len: int | None = None,
                replace_unk: bool | None = None) -> DecodeOptions:
        """DecodeOptions with None meaning the model's ``config.search`` default."""
        s = self.config.search
        pick = (lambda value, default: default if value is None else value)
        return DecodeOptions(
            method, pick(beam, s.beam), nbest, pick(max_len_a, s.max_len_a),
            pick(max_len_b, s.max_len_b), max_len, pick(min_len, s.min_len),
            pick(length_penalty, s.length_penalty), pick(alpha, s.alpha),
            pick(coverage, s.coverage), temperature, top_k, top_p, seed, return_attention,
            pick(replace_unk, s.replace_unk)).check()

    def translate(self, texts: Sequence[str], beam: int | None = None, nbest: int = 1,
                  max_len_a: float | None = None, max_len_b: int | None = None,
                  min_len: int | None = None, length_penalty: str | None = None,
                  alpha: float | None = None, coverage: float | None = None,
                  method: str = "beam", temperature: float = 1.0, top_k: int = 0,
                  top_p: float = 1.0, seed: int | None = None, return_attention: bool = False,
                  max_len: int | None = None, replace_unk: bool | None = None) -> list[Translation]:
        """Translate ``texts`` (results in input order); None = ``config.search`` default."""
        opts = self.options(beam, nbest, max_len_a, max_len_b, min_len, length_penalty, alpha,
                            coverage, method, temperature, top_k, top_p, seed, return_attention,
                            max_len, replace_unk)
        return self.translate_with(texts, opts)

    def translate_with(self, texts: Sequence[str], opts: DecodeOptions,
                       generator: torch.Generator | None = None) -> list[Translation]:
        """Translate with prepared options; ``generator`` overrides ``opts.seed`` (sampling)."""
        if generator is None and opts.method == "sample":
            generator = self._generator(opts.seed)
        sources = self._tokenize(list(texts))
        results: list[Translation | None] = [None] * len(sources)
        for idx in self._batches(sources):
            for i, tr in zip(idx, self._decode_batch([sources[i] for i in idx], opts, generator)):
                results[i] = tr
        for i, src in enumerate(sources):
            if results[i] is None:  # empty input
                results[i] = Translation("", 0.0, [], [], [] if opts.return_attention else None,
                                         [("", 0.0)], 0.0, False)
        return results

    def translate_stream(self, lines: Iterable[str], beam: int | None = None, nbest: int = 1,
                         max_len_a: float | None = None, max_len_b: int | None = None,
                         min_len: int | None = None, length_penalty: str | None = None,
                         alpha: float | None = None, coverage: float | None = None,
                         method: str = "beam", temperature: float = 1.0, top_k: int = 0,
                         top_p: float = 1.0, seed: int | None = None,
                         return_attention: bool = False, max_len: int | None = None,
                         replace_unk: bool | None = None, chunk_size: int | None = None,
                         opts: DecodeOptions | None = None) -> Iterator[Translation]:
        """Translate an iterable of lines (trailing newlines stripped), yielding
        results in order. ``chunk_size`` lines (default 16 batches) are read,
        decoded and yielded at a time (1 for interactive use). Options as for
        :meth:`translate`, or prepared ``opts`` (which win). Sampling draws from
        one generator for the whole stream."""
        opts = opts or self.options(beam, nbest, max_len_a, max_len_b, min_len, length_penalty,
                                    alpha, coverage, method, temperature, top_k, top_p, seed,
                                    return_attention, max_len, replace_unk)
        chunk_size = chunk_size or 16 * self.config.search.batch_size
        generator = self._generator(opts.seed) if opts.method == "sample" else None
        buffer: list[str] = []
        for line in lines:
            buffer.append(line.rstrip("\r\n"))
            if len(buffer) >= chunk_size:
                yield from self.translate_with(buffer, opts, generator)
                buffer = []
        if buffer:
            yield from self.translate_with(buffer, opts, generator)

    # --- internals -------------------------------------------------------------

    def _generator(self, seed: int | None) -> torch.Generator:
        gen = torch.Generator(device=self.device)
        if seed is None:
            gen.seed()
        else:
            gen.manual_seed(seed)
        return gen

    def _tokenize(self, texts: list[str]) -> list[_Source]:
        """Pieces and ids per text, sources cut to max_src_len (warned once)."""
        piece_lists = self.src_codec.tokenizer.encode_batch(texts)
        sources, n_cut = [], 0
        for pieces in piece_lists:
            cut = len(pieces) > self.max_src_len
            pieces = pieces[:self.max_src_len]
            n_cut += cut
            sources.append(_Source(pieces, self.src_codec.vocab.encode(pieces), cut))
        if n_cut and not self._warned:
            self._warned = True
            warnings.warn(f"{n_cut} input(s) longer than {self.max_src_len} tokens were cut to "
                          f"{self.max_src_len} tokens (max_src_len; this warning is shown once)",
                          UserWarning, stacklevel=3)
        return sources

    def _batches(self, sources: list[_Source]) -> list[list[int]]:
        """Indices of non-empty sources, longest first, in batches of search.batch_size."""
        order = sorted((i for i, s in enumerate(sources) if s.ids), key=lambda i: -len(sources[i].ids))
        size = max(1, self.config.search.batch_size)
        return [order[k:k + size] for k in range(0, len(order), size)]

    def _autocast(self):
        return autocast(self.device, self.precision)

    def _pad(self, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows of ids -> (src [B, S] padded with PAD, lengths [B]) on the device."""
        width = max(len(r) for r in rows)
        src = torch.tensor([r + [0] * (width - len(r)) for r in rows], dtype=torch.long)
        lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
        return src.to(self.device), lengths.to(self.device)

    def _search(self, src, lengths, opts: DecodeOptions, generator) -> list[list[search.Hyp]]:
        """Run the chosen search on one batch; -> nbest Hyps per sentence."""
        o, attn = opts, opts.return_attention or opts.replace_unk
        if o.method == "greedy":
            hyps = search.greedy(self.model, src, lengths, max_len_a=o.max_len_a,
                                 max_len_b=o.max_len_b, min_len=o.min_len, max_len=o.max_len,
                                 return_attention=attn)
            return [[h] for h in hyps]
        if o.method == "sample":
            hyps = search.sample(self.model, src, lengths, temperature=o.temperature,
                                 top_k=o.top_k, top_p=o.top_p, generator=generator,
                                 max_len_a=o.max_len_a, max_len_b=o.max_len_b,
                                 min_len=o.min_len, max_len=o.max_len, return_attention=attn)
            return [[h] for h in hyps]
        return search.beam_search(self.model, src, lengths, beam=o.beam, nbest=o.nbest,
                                  length_penalty=o.length_penalty, alpha=o.alpha,
                                  coverage=o.coverage, min_len=o.min_len, max_len_a=o.max_len_a,
                                  max_len_b=o.max_len_b, max_len=o.max_len, return_attention=attn)

    def _decode_batch(self, batch: list[_Source], opts: DecodeOptions, generator) -> list[Translation]:
        src, lengths = self._pad([s.ids for s in batch])
        with torch.inference_mode(), eval_mode(self.model), self._autocast():
            hyps = self._search(src, lengths, opts, generator)
        return [self._translation(h, s, opts) for h, s in zip(hyps, batch)]

    def _translation(self, hyps: list[search.Hyp], source: _Source, opts: DecodeOptions) -> Translation:
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
                           best.logprob, source.truncated)

    # --- teacher-forced likelihood ---------------------------------------------

    def nll(self, sources: Sequence[str], references: Sequence[str]) -> tuple[float, int]:
        """Teacher-forced negative log-likelihood of ``references`` given ``sources``:
        (nll_sum, n_tokens), EOS included, pairs with an empty source skipped."""
        from .batching import Example, collate
        from .loss import masked_cross_entropy

        if len(sources) != len(references):
            raise UserError(f"{len(sources)} sources but {len(references)} references")
        srcs = self._tokenize(list(sources))
        examples = [Example(s.ids, self.tgt_codec.encode(r)) for s, r in zip(srcs, references)]
        total, count = 0.0, 0
        for idx in self._batches(srcs):
            batch = collate(examples, idx).to(self.device)
            with torch.inference_mode(), eval_mode(self.model), self._autocast():
                out = self.model(batch.src, batch.src_lengths, batch.tgt_in)
            loss = masked_cross_entropy(out.logits, batch.tgt_out)
            total, count = total + float(loss.nll_sum), count + loss.n_tokens
        return total, count


def evaluate(translator: Translator, sources: Sequence[str], references: Sequence[str],
             metrics: Sequence[str] = ("bleu", "chrf", "wer", "per"), beam: int | None = None,
             method: str = "beam", max_len_a: float | None = None, max_len_b: int | None = None,
             max_len: int | None = None, min_len: int | None = None,
             length_penalty: str | None = None, alpha: float | None = None,
             coverage: float | None = None, replace_unk: bool | None = None,
             opts: DecodeOptions | None = None, perplexity: bool = True) -> dict:
    """Translate ``sources`` and score them against ``references``.

    Returns {metric: value, "<metric>_signature": sacreBLEU signature (bleu,
    chrf), "nll", "n_tokens", "ppl" (teacher-forced, if ``perplexity``),
    "sentences", "hypotheses": the output texts}. Decoding options as for
    :meth:`Translator.translate` (None = model default), or ``opts`` (wins).
    """
    from . import metrics as metrics_mod

    if len(sources) != len(references):
        raise UserError(f"{len(sources)} source lines but {len(references)} reference lines")
    opts = opts or translator.options(beam=beam, method=method, max_len_a=max_len_a,
                                      max_len_b=max_len_b, max_len=max_len, min_len=min_len,
                                      length_penalty=length_penalty, alpha=alpha,
                                      coverage=coverage, replace_unk=replace_unk)
    hyps = [t.text for t in translator.translate_with(sources, opts)]
    out = metrics_mod.score_texts(hyps, list(references), list(metrics))
    if perplexity:
        nll, n_tokens = translator.nll(sources, references)
        out.update(nll=nll, n_tokens=n_tokens,
                   ppl=metrics_mod.perplexity(nll, n_tokens) if n_tokens else float("nan"))
    out["sentences"] = len(sources)
    out["hypotheses"] = hyps
    return out
