"""Examples, padded batches and length-bucketed, token-budgeted batch sampling.

Size of an example (:func:`example_size`): ``max(len(src), len(tgt) + 1)``,
the longer of the source and the decoder sequences (``tgt_in`` / ``tgt_out``
are one longer than the target). A token-budget batch of ``n`` examples
whose largest size is ``m`` satisfies ``m * n <= batch_tokens``: the padded
source and the padded target tensors both fit the budget. One example larger
than the budget still gets a batch of its own (nothing is dropped).

Shuffled epochs (:meth:`BatchSampler.epoch_batches`): permute the examples
with ``numpy.random.default_rng([seed, epoch])``, cut the permutation into
pools of about ``pool_batches`` (100) batches, sort each pool by size (stable),
cut batches greedily, then shuffle the batch order. The result depends only
on (lengths, budget, seed, epoch), so a run can resume at (epoch, position).
Unshuffled: sort everything by size, cut, keep that order (validation,
translation).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from .vocab import BOS, EOS, PAD


@dataclass
class Example:
    """One pair as ids, without BOS/EOS."""

    src_ids: list[int]
    tgt_ids: list[int]


@dataclass
class Batch:
    """A padded batch; see the shapes below (B batch, S source, T target length)."""

    src: torch.Tensor          # [B, S] padded with PAD
    src_lengths: torch.Tensor  # [B] (>= 1)
    tgt_in: torch.Tensor       # [B, T] BOS y1 .. yn, PAD after
    tgt_out: torch.Tensor      # [B, T] y1 .. yn EOS, PAD after
    index: torch.Tensor        # [B] position of each example in its dataset

    @property
    def src_pad_mask(self) -> torch.Tensor:
        """[B, S] True at padding."""
        return self.src == PAD

    @property
    def tgt_pad_mask(self) -> torch.Tensor:
        """[B, T] True at padding."""
        return self.tgt_out == PAD

    @property
    def n_tgt_tokens(self) -> int:
        """Non-pad target tokens (EOS included)."""
        return int((self.tgt_out != PAD).sum())

    def __len__(self) -> int:
        return self.src.size(0)

    def to(self, device: torch.device | str) -> "Batch":
        """Tensors on ``device`` (src_lengths stays on CPU, as packing needs)."""
        return Batch(self.src.to(device, non_blocking=True), self.src_lengths,
                     self.tgt_in.to(device, non_blocking=True),
                     self.tgt_out.to(device, non_blocking=True), self.index)


def encode_pairs(pairs: Sequence[tuple[str, str]], src_codec, tgt_codec) -> list[Example]:
    """Pairs of texts -> Examples (batch-encoded, so sentencepiece runs in C++)."""
    src = src_codec.encode_batch([s for s, _ in pairs])
    tgt = tgt_codec.encode_batch([t for _, t in pairs])
    return [Example(s, t) for s, t in zip(src, tgt)]


def filter_long(examples: Sequence[Example], max_len: int) -> tuple[list[Example], int]:
    """Drop examples whose source or target has more than ``max_len`` ids, or an
    empty source: (kept, n_dropped). Used on training data (``data.max_len``)."""
    kept = [ex for ex in examples
            if 0 < len(ex.src_ids) <= max_len and len(ex.tgt_ids) <= max_len]
    return kept, len(examples) - len(kept)


def _pad(rows: list[list[int]], width: int) -> torch.Tensor:
    return torch.tensor([r + [PAD] * (width - len(r)) for r in rows], dtype=torch.long)


def collate(examples: Sequence[Example], indices: Sequence[int]) -> Batch:
    """The Batch of ``examples[i] for i in indices`` (``examples`` is the dataset).

    An empty source gets length 1 (one PAD) so packing works; empty targets
    give ``tgt_in = [BOS]``, ``tgt_out = [EOS]``.
    """
    chosen = [examples[i] for i in indices]
    src_rows = [ex.src_ids for ex in chosen]
    tgt_rows = [ex.tgt_ids for ex in chosen]
    s_len = max(1, max(len(r) for r in src_rows))
    t_len = max(len(r) for r in tgt_rows) + 1
    return Batch(
        src=_pad(src_rows, s_len),
        src_lengths=torch.tensor([max(1, len(r)) for r in src_rows], dtype=torch.long),
        tgt_in=_pad([[BOS] + r for r in tgt_rows], t_len),
        tgt_out=_pad([r + [EOS] for r in tgt_rows], t_len),
        index=torch.tensor(list(indices), dtype=torch.long),
    )


def example_size(ex: Example) -> int:
    """``max(len(src), len(tgt) + 1)``: what an example costs in a token budget."""
    return max(len(ex.src_ids), len(ex.tgt_ids) + 1)


def example_sizes(examples: Sequence[Example]) -> list[int]:
    return [example_size(ex) for ex in examples]


def _cut_tokens(order: Sequence[int], sizes: np.ndarray, budget: int) -> list[list[int]]:
    """Greedy cut of size-sorted indices into batches with max * n <= budget."""
    batches, current, biggest = [], [], 0
    for i in order:
        size = int(sizes[i])
        new_biggest = max(biggest, size)
        if current and new_biggest * (len(current) + 1) > budget:
            batches.append(current)
            current, new_biggest = [], size
        current.append(int(i))
        biggest = new_biggest
    if current:
        batches.append(current)
    return batches


def _cut_sentences(order: Sequence[int], n: int) -> list[list[int]]:
    order = [int(i) for i in order]
    return [order[k:k + n] for k in range(0, len(order), n)]


class BatchSampler:
    """Batches of dataset indices, length-bucketed, reproducible from (seed, epoch).

    ``lengths``: the size of each example (see :func:`example_sizes`).
    Exactly one of ``batch_tokens`` (padded-token budget) or
    ``batch_sentences`` (examples per batch) is used; ``batch_sentences``
    wins when both are given.
    """

    def __init__(self, lengths: Sequence[int], batch_tokens: int | None = None,
                 batch_sentences: int | None = None, shuffle: bool = True,
                 seed: int = 0, pool_batches: int = 100):
        if batch_sentences is None and batch_tokens is None:
            raise ValueError("BatchSampler needs batch_tokens or batch_sentences")
        if (batch_sentences or batch_tokens) < 1:
            raise ValueError("batch size must be positive")
        self.sizes = np.asarray(lengths, dtype=np.int64)
        self.batch_tokens = batch_tokens
        self.batch_sentences = batch_sentences
        self.shuffle = shuffle
        self.seed = seed
        self.pool_batches = pool_batches
        self._len: int | None = None

    def _pool_size(self) -> int:
        """Examples per sorting pool: about pool_batches batches' worth."""
        if self.batch_sentences is not None:
            per_batch = self.batch_sentences
        else:
            mean = float(self.sizes.mean()) if len(self.sizes) else 1.0
            per_batch = max(1, int(self.batch_tokens / max(mean, 1.0)))
        return max(1, per_batch * self.pool_batches)

    def _cut(self, order: np.ndarray) -> list[list[int]]:
        order = order[np.argsort(self.sizes[order], kind="stable")]
        if self.batch_sentences is not None:
            return _cut_sentences(order, self.batch_sentences)
        return _cut_tokens(order, self.sizes, self.batch_tokens)

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """All batches of ``epoch``: every index exactly once."""
        n = len(self.sizes)
        if not self.shuffle:
            return self._cut(np.arange(n))
        rng = np.random.default_rng([self.seed, epoch])
        perm = rng.permutation(n)
        pool = self._pool_size()
        batches = []
        for start in range(0, n, pool):
            batches.extend(self._cut(perm[start:start + pool]))
        order = rng.permutation(len(batches))
        return [batches[k] for k in order]

    def __len__(self) -> int:
        """Number of batches of epoch 0 (other epochs may differ by a few)."""
        if self._len is None:
            self._len = len(self.epoch_batches(0))
        return self._len
