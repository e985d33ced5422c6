"""The beam search tree: search.BeamTree (the recorder) and serve.tree (its JSON and best path)."""
from __future__ import annotations

import pytest
import torch

from transduce import search
from transduce.config import DecodeOptions, ModelConfig
from transduce.model import Seq2Seq
from transduce.serve.tree import best_path, tree_json
from transduce.vocab import EOS


def tiny_model(family: str, cell: str) -> Seq2Seq:
    """A random model whose EOS is likely enough that hypotheses end at varied lengths."""
    torch.manual_seed(0)
    cfg = ModelConfig(family=family, cell=cell, emb_dim=8, hidden=12, enc_layers=1, dec_layers=1,
                      dropout=0.0, emb_dropout=0.0, init_range=0.5)
    model = Seq2Seq.from_config(cfg, 11, 13).eval()
    with torch.no_grad():
        model.decoder.out.bias[EOS] += 2.0
    return model


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    """src [4, 6] padded with 0, lengths [4]."""
    lens = torch.tensor([6, 3, 5, 1])
    src = torch.randint(4, 11, (4, 6), generator=torch.Generator().manual_seed(1))
    src[torch.arange(6)[None, :] >= lens[:, None]] = 0
    return src, lens


OPTS = DecodeOptions(beam=4, nbest=3, length_penalty="gnmt", coverage=0.2, max_len_a=1.0, max_len_b=2,
                     return_attention=True)


@pytest.mark.parametrize("family,cell", [("luong", "lstm"), ("bahdanau", "gru")])
def test_recording_the_tree_changes_nothing(family, cell):
    model, (src, lens) = tiny_model(family, cell), batch()
    plain = search.beam_search(model, src, lens, OPTS)
    recorded = search.decode(model, src, lens, OPTS, tree=search.BeamTree())
    for a, b in zip(plain, recorded):
        assert [(h.tokens, h.score, h.logprob) for h in a] == [(h.tokens, h.score, h.logprob) for h in b]
        assert all(torch.equal(x.attention, y.attention) for x, y in zip(a, b))


def test_tree_steps_hold_the_beam_and_the_best_path_spells_the_best_hypothesis():
    model, (src, lens) = tiny_model("luong", "lstm"), batch()
    tree = search.BeamTree()
    hyps = search.beam_search(model, src, lens, OPTS, tree=tree)
    assert sorted(tree.steps) == [0, 1, 2, 3]
    for i, steps in tree.steps.items():
        slots = [0]  # step -1: the empty hypothesis
        for nodes in steps:
            kept = [n for n in nodes if n.status == "kept"]
            assert len(nodes) <= 2 * OPTS.beam and sorted(n.slot for n in kept) == list(range(len(kept)))
            assert all(n.parent in slots for n in nodes)
            assert all(n.token == EOS for n in nodes if n.status == "finished")
            assert [n.score for n in nodes] == sorted((n.score for n in nodes), reverse=True)
            slots = [n.slot for n in kept]
        best = hyps[i][0]
        path = best_path(steps, best.tokens)
        on_path = [steps[t][j] for t, j in enumerate(path)]
        assert [n.token for n in on_path][:len(best.tokens)] == best.tokens
        if on_path[-1].status == "finished":  # ended with EOS: the node's raw score is the hypothesis'
            assert on_path[-1].score == pytest.approx(best.logprob, abs=1e-6)


def test_tree_json_names_tokens_and_greedy_ignores_the_recorder():
    model, (src, lens) = tiny_model("bahdanau", "gru"), batch()
    tree = search.BeamTree()
    hyps = search.beam_search(model, src, lens, OPTS, tree=tree)
    itos = ["<pad>", "<unk>", "<bos>", "<eos>"] + [f"w{i}" for i in range(4, 13)]
    out = tree_json(tree.steps[0], hyps[0][0].tokens, itos)
    assert set(out) == {"steps", "path"} and len(out["path"]) >= 1
    assert set(out["steps"][0][0]) == {"parent", "token", "score", "status", "slot"}
    assert all(n["token"] in itos for step in out["steps"] for n in step)
    unused = search.BeamTree()
    search.decode(model, src, lens, DecodeOptions(method="greedy"), tree=unused)
    assert unused.steps == {}
