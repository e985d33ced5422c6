"""Decoding: greedy, batched beam search, sampling and unknown-word replacement.

Every function takes a ``Seq2Seq``-like ``model`` with ``encode(src,
src_lengths) -> Encoded``, ``init_state(enc) -> DecoderState`` and
``step(tokens, state, enc) -> StepOutput``, and reorders what it keeps with
``Encoded.select`` / ``DecoderState.select``. Nothing here knows cell or
attention types. Shapes: B sentences, K beam, S source length, V vocabulary.

The encoder output keeps one row per sentence: ``step`` gets W consecutive
decoder rows per Encoded row (W = K in beam search after its first step, else
1), so the source memory is never copied K times (the attention reads it
once for the K hypotheses of a sentence).

Every search takes the one set of decoding options, a frozen
``config.DecodeOptions`` (already checked); :func:`decode` picks the search
from ``opts.method``.

Conventions shared by all searches:

* Output length limit per sentence ``L = floor(max_len_a * src_len +
  max_len_b)`` (or ``max_len`` for all when given). A hypothesis has at most
  ``L`` tokens; one that reaches ``L`` tokens without EOS is finished as it is
  (truncated, no EOS log-probability added).
* ``min_len``: EOS gets log-probability -inf while fewer than ``min_len``
  tokens have been produced (no renormalisation of the other tokens).
* PAD and BOS are never produced (log-probability -inf, no renormalisation).
* ``Hyp.tokens`` exclude BOS and EOS; ``Hyp.logprob`` is the raw sum of
  log-probabilities (EOS included when the hypothesis ended with EOS);
  ``Hyp.score`` is the score used for ranking (equal to ``logprob`` for greedy
  and sampling); ``Hyp.attention`` is ``[len(tokens), src_len]`` on CPU (one
  row per output token; the EOS step's row is not kept) or None.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from .config import DecodeOptions
from .vocab import BOS, EOS, PAD

COVERAGE_EPS = 1e-10
"""Attention sums are clamped at this before the log of the coverage penalty."""


@dataclass
class Hyp:
    """One output hypothesis (token ids without BOS/EOS)."""

    tokens: list[int]
    score: float
    logprob: float = 0.0
    attention: Tensor | None = None  # [len(tokens), S_i] on CPU


# --- shared helpers ---------------------------------------------------------

def keeps_attention(opts: DecodeOptions) -> bool:
    """Whether the search must keep attention rows (returned, or needed by replace_unk)."""
    return opts.return_attention or opts.replace_unk


def max_lengths(src_lengths: Tensor, opts: DecodeOptions) -> Tensor:
    """Per-sentence output length limits, LongTensor [B] (>= 0) on src_lengths' device."""
    if opts.max_len is not None:
        return torch.full_like(src_lengths, opts.max_len)
    limits = torch.floor(src_lengths.double() * float(opts.max_len_a) + float(opts.max_len_b))
    return limits.clamp(min=0).long()


def log_probs(logits: Tensor, step: int, min_len: int) -> Tensor:
    """[N, V] logits -> float32 log-probabilities; PAD and BOS masked, EOS masked
    while step < min_len (masked = -inf, the rest not renormalised)."""
    return _mask_specials(logits.float().log_softmax(-1), step, min_len)


def _mask_specials(scores: Tensor, step: int, min_len: int) -> Tensor:
    """``scores`` [N, V] with PAD, BOS (and EOS while step < min_len) set to -inf, in place."""
    scores[:, PAD] = -math.inf
    scores[:, BOS] = -math.inf
    if step < min_len:
        scores[:, EOS] = -math.inf
    return scores


def top_extensions(logits: Tensor, scores: Tensor, n: int, step: int, min_len: int
                   ) -> tuple[Tensor, Tensor, Tensor]:
    """The ``n`` best one-token extensions of each sentence's hypotheses.

    logits [A*W, V] of W hypotheses per sentence whose raw scores are ``scores``
    [A, W] -> (values, slots, tokens), each [A, n']: score + log p(token) (as
    :func:`log_probs` masks it), the hypothesis' slot in 0..W-1 and the token,
    best first; n' = min(n, W * V). Equal to the top n of ``scores + log_probs``
    over all W * V pairs, but it takes each row's top n from the logits and
    normalises only those (a log-sum-exp per row instead of a [A*W, V] log-softmax
    and sum), which is faster. ``logits`` may be changed in place.
    """
    a, w = scores.shape
    logits = logits.float()
    lse = logits.logsumexp(-1, keepdim=True)  # [A*W, 1], before masking (not renormalised)
    per_row = min(n, logits.size(-1))
    top, toks = _mask_specials(logits, step, min_len).topk(per_row, dim=-1)  # [A*W, n]
    top = (top - lse + scores.view(-1, 1)).view(a, w * per_row)
    values, pick = top.topk(min(n, w * per_row), dim=-1)  # [A, n']
    return values, pick // per_row, toks.view(a, w * per_row).gather(1, pick)


def length_normalise(logprob: Tensor, length: Tensor | int, penalty: str, alpha: float) -> Tensor:
    """Normalised score: none = logprob, average = logprob / len,
    gnmt = logprob / ((5 + len) / 6) ** alpha (Wu et al., 2016). len >= 1 enforced."""
    if penalty == "none":
        return logprob
    length = torch.as_tensor(length, dtype=torch.float32, device=logprob.device).clamp(min=1)
    if penalty == "average":
        return logprob / length
    if penalty == "gnmt":
        return logprob / ((5.0 + length) / 6.0) ** alpha
    raise ValueError(f"unknown length penalty {penalty!r}")


def coverage_penalty(attn_sum: Tensor, pad_mask: Tensor, beta: float) -> Tensor:
    """GNMT coverage penalty beta * sum_j log(min(attn_sum_j, 1)) over real source
    positions. attn_sum, pad_mask: [N, S] -> [N] (<= 0)."""
    cov = attn_sum.float().clamp(min=COVERAGE_EPS, max=1.0).masked_fill(pad_mask, 1.0)
    return beta * cov.log().sum(-1)


# --- greedy and sampling ------------------------------------------------------

def _decode_one(model, src: Tensor, src_lengths: Tensor, choose: Callable[[Tensor], Tensor],
                limits: Tensor, min_len: int, return_attention: bool) -> list[Hyp]:
    """One hypothesis per sentence; ``choose(logp [A, V]) -> tokens [A]`` picks each step.

    Only the A sentences still running are decoded: a sentence leaves the batch
    when it produces EOS or reaches its length limit.
    """
    n, dev = src.size(0), src.device
    limits = limits.to(dev)
    horizon = int(limits.max().item()) if n else 0
    enc = model.encode(src, src_lengths)
    state = model.init_state(enc)
    out_tokens = torch.zeros(n, horizon, dtype=torch.long, device=dev)  # [B, T]
    lengths = torch.zeros(n, dtype=torch.long, device=dev)  # tokens before EOS
    logprob = torch.zeros(n, device=dev)
    attn = None  # [B, T, S] once a step returns attention (and it is wanted)
    ids = torch.arange(n, device=dev)  # [A] the running sentences
    ids = ids[limits > 0]
    if ids.numel() < n:
        enc, state = enc.select(ids), state.select(ids)
    tokens = torch.full((ids.numel(),), BOS, dtype=torch.long, device=dev)
    for t in range(horizon):
        if ids.numel() == 0:
            break
        out = model.step(tokens, state, enc)
        logp = log_probs(out.logits, t, min_len)
        tokens = choose(logp)  # [A]
        logprob[ids] += logp.gather(1, tokens[:, None]).squeeze(1)
        out_tokens[ids, t] = tokens
        if return_attention and out.attention is not None:
            if attn is None:
                attn = torch.zeros(n, horizon, out.attention.size(-1), device=dev)
            attn[ids, t] = out.attention.float()
        going = (tokens != EOS) & (limits[ids] > t + 1)  # [A]
        lengths[ids] += (tokens != EOS).long()
        state = out.state
        if not bool(going.all()):
            keep = going.nonzero().squeeze(1)
            ids, tokens = ids[keep], tokens[keep]
            state, enc = state.select(keep), enc.select(keep)
    return _collect_one(out_tokens, attn, lengths, logprob, src_lengths)


def _collect_one(out_tokens: Tensor, attn: Tensor | None, lengths: Tensor, logprob: Tensor,
                 src_lengths: Tensor) -> list[Hyp]:
    """One Hyp per sentence from out_tokens [B, T] and attention [B, T, S] (or None)."""
    seq = out_tokens.tolist()
    att = attn.cpu() if attn is not None else None
    hyps = []
    for i, (length, lp, slen) in enumerate(zip(lengths.tolist(), logprob.tolist(),
                                               src_lengths.tolist())):
        a = att[i, :length, :slen].clone() if att is not None else None
        hyps.append(Hyp(seq[i][:length], lp, lp, a))
    return hyps


@torch.inference_mode()
def greedy(model, src: Tensor, src_lengths: Tensor,
           opts: DecodeOptions = DecodeOptions(method="greedy")) -> list[Hyp]:
    """Batched greedy decoding. src [B, S], src_lengths [B] -> B Hyps (score = logprob).
    Uses the length limits, min_len and attention options of ``opts``."""
    return _decode_one(model, src, src_lengths, lambda logp: logp.argmax(-1),
                       max_lengths(src_lengths, opts), opts.min_len, keeps_attention(opts))


def filter_logits(logp: Tensor, temperature: float, top_k: int, top_p: float) -> Tensor:
    """Sampling logits [B, V]: divide by temperature, keep the top_k largest
    (0 = all) and the smallest set whose probability reaches top_p (nucleus);
    the rest get -inf. The most likely token is always kept."""
    x = logp / temperature
    if top_k > 0:
        kth = x.topk(min(top_k, x.size(-1)), dim=-1).values[:, -1:]  # [B, 1]
        x = x.masked_fill(x < kth, -math.inf)
    if top_p < 1.0:
        sorted_x, order = x.sort(-1, descending=True)
        probs = sorted_x.softmax(-1)
        drop = probs.cumsum(-1) - probs >= top_p  # mass before this token already >= p
        drop[:, 0] = False
        x = x.scatter(1, order, sorted_x.masked_fill(drop, -math.inf))
    return x


@torch.inference_mode()
def sample(model, src: Tensor, src_lengths: Tensor,
           opts: DecodeOptions = DecodeOptions(method="sample"),
           generator: torch.Generator | None = None) -> list[Hyp]:
    """Batched ancestral sampling with ``opts.temperature``, ``top_k`` and ``top_p`` (nucleus).

    ``temperature == 0`` means argmax (greedy). Scores are log-probabilities of
    the sampled tokens under the unmodified model distribution, so top_k=1
    gives exactly greedy's tokens and scores. Reproducible from ``generator``.
    """
    def choose(logp: Tensor) -> Tensor:
        if opts.temperature <= 0:
            return logp.argmax(-1)
        probs = filter_logits(logp, opts.temperature, opts.top_k, opts.top_p).softmax(-1)
        finite = torch.isfinite(probs).all(-1, keepdim=True)  # [B, 1]; False for a nan model
        probs = torch.where(finite, probs, torch.ones_like(probs))
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)  # [B]

    return _decode_one(model, src, src_lengths, choose, max_lengths(src_lengths, opts),
                       opts.min_len, keeps_attention(opts))


# --- beam search --------------------------------------------------------------

@dataclass
class TreeNode:
    """One candidate of one beam step: it extends the hypothesis in slot ``parent``
    of the previous step (slot 0 of step -1 is the empty hypothesis, BOS) with
    ``token``; ``score`` is the raw log-prob sum so far. ``status``: "kept" (live
    in slot ``slot`` of this step), "finished" (EOS among the top K) or "pruned"."""

    parent: int
    token: int
    score: float
    status: str
    slot: int = -1


class BeamTree:
    """Recorder of a beam search, for display: pass ``tree=BeamTree()`` to
    :func:`beam_search` (off by default; None costs one test per step).

    ``steps[i][t]`` lists the top-2K candidates of sentence i at step t
    (:class:`TreeNode`, best first): the K kept, the finished and the best
    pruned. A sentence's list ends when the sentence is done.
    """

    def __init__(self) -> None:
        self.steps: dict[int, list[list[TreeNode]]] = {}

    def record(self, ids: Tensor, vals: Tensor, parents: Tensor, toks: Tensor,
               finished: Tensor, pick: Tensor) -> None:
        """One step: ids [A] sentence indices; vals, parents (slot in the previous
        step), toks, finished [A, 2K] the candidates; pick [A, K] columns kept, by slot."""
        for a, (i, v, p, tk, f, pk) in enumerate(zip(ids.tolist(), vals.tolist(), parents.tolist(),
                                                     toks.tolist(), finished.tolist(), pick.tolist())):
            slots = {col: slot for slot, col in enumerate(pk)}
            nodes = []
            for col, score in enumerate(v):
                if score == -math.inf:
                    continue
                status = "finished" if f[col] else "pruned"
                if tk[col] != EOS and col in slots:
                    status = "kept"
                nodes.append(TreeNode(p[col], tk[col], score, status,
                                      slots[col] if status == "kept" else -1))
            self.steps.setdefault(i, []).append(nodes)


@dataclass
class _Beams:
    """Live hypotheses of the A still-active sentences (W rows each, row = a * W + k).

    W (``width``) is 1 before the first step (the empty hypothesis alone, so the
    first step runs one row per sentence) and the beam size K after it.
    """

    ids: Tensor           # [A] original sentence index
    limits: Tensor        # [A] output length limit
    scores: Tensor        # [A, W] raw log-prob sums, -inf = empty slot
    tokens: Tensor        # [A*K, t] tokens so far (no BOS)
    attn: Tensor | None   # [A*K, t, S] attention history (if kept)
    cov: Tensor | None    # [A*K, S] attention sums (if coverage is used)
    last: Tensor          # [A*K] last token (decoder input)

    @property
    def width(self) -> int:
        """Rows per sentence: 1 before the first step, then the beam size."""
        return self.scores.size(1)

    def select(self, sel: Tensor, rows: Tensor) -> "_Beams":
        """Keep sentences ``sel`` [A'] whose hypothesis rows are ``rows`` [A'*K]."""
        return _Beams(self.ids[sel], self.limits[sel], self.scores[sel], self.tokens[rows],
                      None if self.attn is None else self.attn[rows],
                      None if self.cov is None else self.cov[rows], self.last[rows])


class _Finished:
    """Per-sentence lists of finished hypotheses, pruned to the n best."""

    def __init__(self, n: int, opts: DecodeOptions, src_lengths: list[int], device: torch.device):
        self.hyps: list[list[Hyp]] = [[] for _ in range(n)]
        self.opts = opts
        self.src_lengths = src_lengths
        self.top = torch.full((n, opts.nbest), -math.inf, device=device)  # [B, nbest] sorted

    def add(self, sent: Tensor, raw: Tensor, norm: Tensor, tokens: Tensor, attn: Tensor | None):
        """Add N hypotheses: sent/raw/norm [N], tokens [N, t], attn [N, t, S] or None."""
        if sent.numel() == 0:
            return
        attn = attn.float().cpu() if attn is not None else None
        touched = set()
        for j, (i, r, s, toks) in enumerate(zip(sent.tolist(), raw.tolist(), norm.tolist(),
                                                tokens.tolist())):
            a = attn[j, :, :self.src_lengths[i]].clone() if attn is not None else None
            self.hyps[i].append(Hyp(toks, s, r, a))
            touched.add(i)
        for i in touched:  # stable sort: earlier-finished first among equal scores
            self.hyps[i] = sorted(self.hyps[i], key=lambda h: -h.score)[:self.opts.nbest]
            vals = [h.score for h in self.hyps[i]]
            vals += [-math.inf] * (self.opts.nbest - len(vals))
            self.top[i] = torch.tensor(vals, device=self.top.device)

    def worst(self, ids: Tensor) -> Tensor:
        """[A] the nbest-th best finished score of sentences ``ids`` (-inf if too few)."""
        return self.top[ids, -1]


def _final_scores(raw: Tensor, length: int, cov: Tensor | None, pad_mask: Tensor,
                  opts: DecodeOptions) -> Tensor:
    """Ranking scores of finishing hypotheses: raw [N] -> [N]."""
    score = length_normalise(raw, length, opts.length_penalty, opts.alpha)
    if cov is not None and opts.coverage > 0:
        score = score + coverage_penalty(cov, pad_mask, opts.coverage)
    return score


def _bound(beams: _Beams, t: int, opts: DecodeOptions) -> Tensor:
    """[A] the score a sentence's live hypotheses are still expected to reach,
    before step ``t`` (they hold t tokens).

    ``opts.exact_stop``: an upper bound. Log-probabilities only decrease and are
    <= 0, a hypothesis has at most L tokens, and the length penalty grows with
    length, so raw / lp(L) bounds the normalised score (lp = 1 for none, L for
    average); the coverage penalty is <= 0, so it cannot raise the bound.
    Otherwise the best live score normalised at the shortest length it can finish
    with, t + 1 (OpenNMT-py's and Hugging Face's rule): equal to the bound for
    ``length_penalty: none``; with a length penalty a longer hypothesis could
    still overtake, which the exact rule waits for at the cost of more steps.
    """
    best = beams.scores.max(-1).values  # [A]
    if opts.length_penalty == "none":
        return best
    length = beams.limits if opts.exact_stop else t + 1
    return length_normalise(best, length, opts.length_penalty, opts.alpha)


def _finish_at_limit(beams: _Beams, t: int, enc, fin: _Finished, opts: DecodeOptions) -> Tensor:
    """Finish (truncated) the live hypotheses of sentences whose limit is t; -> done [A]."""
    at_limit = beams.limits == t  # [A]
    if not at_limit.any():
        return at_limit
    live = at_limit[:, None] & (beams.scores > -math.inf)  # [A, K]
    rows = live.view(-1).nonzero().squeeze(1)  # [N]
    raw = beams.scores.view(-1)[rows]
    cov = beams.cov[rows] if beams.cov is not None else None
    norm = _final_scores(raw, t, cov, enc.pad_mask[rows // beams.width], opts)
    attn = beams.attn[rows] if beams.attn is not None else None
    fin.add(beams.ids[rows // beams.width], raw, norm, beams.tokens[rows], attn)
    return at_limit


def _advance(beams: _Beams, out, t: int, enc, fin: _Finished, opts: DecodeOptions,
             tree: BeamTree | None = None):
    """One beam step from StepOutput ``out``; returns (beams, source rows [A*K]).
    ``tree`` records the step's candidates when given."""
    k, w = opts.beam, beams.width
    a = beams.scores.size(0)
    vals, slots, toks = top_extensions(out.logits, beams.scores, 2 * k, t, opts.min_len)  # [A, 2K]
    if vals.size(1) < k:  # fewer candidates than slots (first step, tiny vocabulary)
        vals = nn.functional.pad(vals, (0, k - vals.size(1)), value=-math.inf)
        slots = nn.functional.pad(slots, (0, k - slots.size(1)), value=0)
        toks = nn.functional.pad(toks, (0, k - toks.size(1)), value=PAD)
    rows = torch.arange(a, device=vals.device)[:, None] * w + slots  # [A, 2K]
    is_eos = toks == EOS
    cov = beams.cov + out.attention if beams.cov is not None else None  # [A*K, S]
    # EOS among the top K candidates finishes a hypothesis; the K best others stay live.
    fin_mask = is_eos & (vals > -math.inf)
    fin_mask[:, k:] = False
    frows = rows[fin_mask]
    fcov = cov[frows] if cov is not None else None
    norm = _final_scores(vals[fin_mask], t + 1, fcov, enc.pad_mask[frows // w], opts)
    attn_hist = beams.attn[frows] if beams.attn is not None else None
    fin.add(beams.ids[frows // w], vals[fin_mask], norm, beams.tokens[frows], attn_hist)
    live_vals, pick = vals.masked_fill(is_eos, -math.inf).topk(k, dim=-1)  # [A, K]
    if tree is not None:
        tree.record(beams.ids, vals, slots, toks, fin_mask, pick)
    src_rows = rows.gather(1, pick).view(-1)  # [A*K] rows of the previous step
    new_tok = toks.gather(1, pick).view(-1)  # [A*K]
    attn = None
    if beams.attn is not None:
        attn = torch.cat([beams.attn[src_rows], out.attention[src_rows, None]], 1)
    nxt = _Beams(beams.ids, beams.limits, live_vals,
                 torch.cat([beams.tokens[src_rows], new_tok[:, None]], 1), attn,
                 None if cov is None else cov[src_rows], new_tok)
    return nxt, src_rows


def _start(model, src: Tensor, src_lengths: Tensor, limits: Tensor, opts: DecodeOptions):
    """Encode; one row (the empty hypothesis) per sentence -> (enc, state, beams).
    The first step's selection expands the state to K rows; the encoder output
    keeps one row per sentence (see the module docstring)."""
    n, dev = src.size(0), src.device
    enc = model.encode(src, src_lengths)
    state = model.init_state(enc)
    s = enc.pad_mask.size(1)
    beams = _Beams(torch.arange(n, device=dev), limits.to(dev), torch.zeros(n, 1, device=dev),
                   torch.zeros(n, 0, dtype=torch.long, device=dev),
                   torch.zeros(n, 0, s, device=dev) if keeps_attention(opts) else None,
                   torch.zeros(n, s, device=dev) if opts.coverage > 0 else None,
                   torch.full((n,), BOS, dtype=torch.long, device=dev))
    return enc, state, beams


@torch.inference_mode()
def beam_search(model, src: Tensor, src_lengths: Tensor,
                opts: DecodeOptions = DecodeOptions(), tree: BeamTree | None = None) -> list[list[Hyp]]:
    """Batched beam search: src [B, S], src_lengths [B] -> B lists of ``opts.nbest``
    Hyps, best first, with beam ``opts.beam`` (K below).

    All sentences x K beams advance together as [B*K] rows. Each step takes
    the top 2K candidates of each sentence; EOS candidates among the top K are
    moved to the sentence's finished list, and the K best non-EOS candidates
    stay live, so an early finished hypothesis never ends the beam. Ranking
    score = length-normalised log-prob (``opts.length_penalty``, ``alpha``; +
    GNMT coverage penalty when ``opts.coverage`` > 0 and the model has attention). A sentence is done when it
    has ``nbest`` finished hypotheses and the upper bound of :func:`_bound` on
    its live hypotheses cannot beat the nbest-th of them (exact for every
    penalty; with ``opts.exact_stop`` false, the default, when none of them beats
    it at its current length), or when its live hypotheses reach the length limit. Done
    sentences are dropped from the batch. ``tree`` (a :class:`BeamTree`) records
    every step's candidates when given.
    """
    limits = max_lengths(src_lengths, opts)
    fin = _Finished(src.size(0), opts, src_lengths.tolist(), src.device)
    if src.size(0) == 0:
        return []
    enc, state, beams = _start(model, src, src_lengths, limits, opts)
    for t in range(int(limits.max().item()) + 1):
        done = _finish_at_limit(beams, t, enc, fin, opts)
        if t > 0:
            done |= _bound(beams, t, opts) <= fin.worst(beams.ids)
        if done.any():
            sel = (~done).nonzero().squeeze(1)  # [A']
            if sel.numel() == 0:
                break
            w = beams.width
            rows = (sel[:, None] * w + torch.arange(w, device=sel.device)).view(-1)
            beams, enc, state = beams.select(sel, rows), enc.select(sel), state.select(rows)
        out = model.step(beams.last, state, enc)
        if out.attention is None:
            beams.attn, beams.cov = None, None
        beams, src_rows = _advance(beams, out, t, enc, fin, opts, tree)
        state = out.state.select(src_rows)
    # A model that outputs nan never finishes a hypothesis: give such a sentence an empty one.
    return [hyps or [Hyp([], math.nan, math.nan)] for hyps in fin.hyps]


def decode(model, src: Tensor, src_lengths: Tensor, opts: DecodeOptions,
           generator: torch.Generator | None = None, tree: BeamTree | None = None) -> list[list[Hyp]]:
    """The search ``opts.method`` names: B lists of Hyps (``opts.nbest`` for beam, else one).
    ``tree`` records a beam search (ignored by greedy and sampling)."""
    if opts.method == "greedy":
        return [[h] for h in greedy(model, src, src_lengths, opts)]
    if opts.method == "sample":
        return [[h] for h in sample(model, src, src_lengths, opts, generator)]
    return beam_search(model, src, src_lengths, opts, tree)


# --- unknown-word replacement -------------------------------------------------

def replace_unk(pieces: list[str], src_pieces: list[str], attention: Tensor | None,
                unk: str = "<unk>") -> list[str]:
    """Replace each ``unk`` output piece by the source piece it attends to most.

    attention: [len(pieces), len(src_pieces)] (rows beyond it are ignored);
    without attention the pieces are returned unchanged.
    """
    if attention is None or not src_pieces:
        return list(pieces)
    out = []
    for i, piece in enumerate(pieces):
        if piece == unk and i < attention.size(0):
            j = int(attention[i, :len(src_pieces)].argmax())
            piece = src_pieces[j]
        out.append(piece)
    return out
