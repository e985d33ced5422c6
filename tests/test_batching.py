"""Tests for transduce.batching: collate, token budgets, bucketing, resume."""
from __future__ import annotations

import random

import pytest
import torch

from transduce.batching import (Batch, BatchSampler, Example, collate, encode_pairs,
                                example_size, example_sizes, filter_long)
from transduce.tokenizers import CharTokenizer, WhitespaceTokenizer
from transduce.vocab import BOS, EOS, PAD, Codec, Vocab


def make_examples(n=500, seed=0, lo=1, hi=40):
    rng = random.Random(seed)
    return [Example([rng.randrange(4, 50) for _ in range(rng.randint(lo, hi))],
                    [rng.randrange(4, 50) for _ in range(rng.randint(lo, hi))])
            for _ in range(n)]


def test_collate_shapes_and_shift():
    exs = [Example([5, 6, 7], [8, 9]), Example([10], [11, 12, 13]), Example([4, 4], [])]
    b = collate(exs, [2, 0, 1])
    assert b.src.tolist() == [[4, 4, PAD], [5, 6, 7], [10, PAD, PAD]]
    assert b.src_lengths.tolist() == [2, 3, 1]
    assert b.tgt_in.tolist() == [[BOS, PAD, PAD, PAD], [BOS, 8, 9, PAD], [BOS, 11, 12, 13]]
    assert b.tgt_out.tolist() == [[EOS, PAD, PAD, PAD], [8, 9, EOS, PAD], [11, 12, 13, EOS]]
    assert b.index.tolist() == [2, 0, 1]
    assert b.src_pad_mask.tolist() == [[False, False, True], [False] * 3, [False, True, True]]
    assert b.tgt_pad_mask.sum().item() == 4 and b.n_tgt_tokens == 8
    assert b.src.dtype == torch.long and len(b) == 3
    # tgt_out is tgt_in shifted left by one wherever tgt_in is not padding
    mask = ~b.tgt_pad_mask
    assert torch.equal(b.tgt_in[:, 1:][mask[:, 1:]], b.tgt_out[:, :-1][mask[:, 1:]])
    moved = b.to("cpu")
    assert isinstance(moved, Batch) and torch.equal(moved.src, b.src)


def test_encode_pairs_and_filter_long():
    src = Codec(CharTokenizer(), Vocab.build([list("abc")]))
    tgt = Codec(WhitespaceTokenizer(), Vocab.build([["X", "Y"]]))
    exs = encode_pairs([("ab", "X Y"), ("cab", "Y")], src, tgt)
    assert exs[1] == Example([src.vocab.stoi[c] for c in "cab"], [tgt.vocab.stoi["Y"]])
    kept, dropped = filter_long(exs + [Example([4] * 5, [4]), Example([4], [4] * 6),
                                       Example([], [4])], max_len=5)
    assert dropped == 2 and len(kept) == 3 and kept[2].src_ids == [4] * 5
    assert example_size(Example([4] * 3, [4] * 3)) == 4
    assert example_size(Example([4] * 9, [4] * 3)) == 9


def test_every_example_once_and_budget():
    exs = make_examples()
    sizes = example_sizes(exs)
    sampler = BatchSampler(sizes, batch_tokens=200, seed=1)
    batches = sampler.epoch_batches(0)
    assert sorted(i for b in batches for i in b) == list(range(len(exs)))
    for b in batches:
        assert max(sizes[i] for i in b) * len(b) <= 200
        batch = collate(exs, b)
        assert batch.src.numel() <= 200 and batch.tgt_in.numel() <= 200
    assert len(sampler) == len(batches)
    # bucketing: batches are far less padded than random batches would be
    pad = sum(max(sizes[i] for i in b) * len(b) - sum(sizes[i] for i in b) for b in batches)
    assert pad / sum(sizes) < 0.15


def test_oversized_example_gets_own_batch():
    sizes = [3, 4, 50, 5, 3]
    for shuffle in (True, False):
        batches = BatchSampler(sizes, batch_tokens=20, shuffle=shuffle).epoch_batches(0)
        assert [2] in batches
        assert sorted(i for b in batches for i in b) == [0, 1, 2, 3, 4]


def test_reproducible_and_epochs_differ():
    sizes = example_sizes(make_examples())
    a = BatchSampler(sizes, batch_tokens=300, seed=7)
    b = BatchSampler(sizes, batch_tokens=300, seed=7)
    assert a.epoch_batches(3) == b.epoch_batches(3)
    assert a.epoch_batches(3) != a.epoch_batches(4)
    assert a.epoch_batches(3) != BatchSampler(sizes, batch_tokens=300, seed=8).epoch_batches(3)


def test_unshuffled_is_sorted_by_size():
    sizes = example_sizes(make_examples(100))
    batches = BatchSampler(sizes, batch_tokens=150, shuffle=False).epoch_batches(0)
    flat = [i for b in batches for i in b]
    assert [sizes[i] for i in flat] == sorted(sizes)
    assert batches == BatchSampler(sizes, batch_tokens=150, shuffle=False).epoch_batches(5)


def test_sentence_batching():
    sizes = example_sizes(make_examples(103))
    sampler = BatchSampler(sizes, batch_sentences=10, seed=2)
    batches = sampler.epoch_batches(1)
    assert sorted(len(b) for b in batches) == [3] + [10] * 10
    assert sorted(i for b in batches for i in b) == list(range(103))


def test_an_epoch_covers_every_example_once_and_repeats_exactly():
    exs = make_examples(300)
    sampler = BatchSampler(example_sizes(exs), batch_tokens=250, seed=4)
    order = sampler.epoch_batches(2)
    assert BatchSampler(example_sizes(exs), batch_tokens=250, seed=4).epoch_batches(2) == order
    assert sampler.epoch_batches(3) != order
    full = [collate(exs, indices) for indices in order]
    seen = torch.cat([b.index for b in full]).sort().values
    assert seen.tolist() == list(range(300))
    for b in full:
        for row, i in enumerate(b.index.tolist()):
            n = len(exs[i].tgt_ids)
            assert b.tgt_out[row, :n].tolist() == exs[i].tgt_ids


def test_sampler_needs_a_size():
    with pytest.raises(ValueError):
        BatchSampler([1, 2])
