"""Translator: ordering, empty and over-long inputs, options, precision, evaluate."""
from __future__ import annotations

import dataclasses
import math
import warnings

import pytest
import torch

from transduce import config as config_mod
from transduce.errors import UserError
from transduce.translator import Translator, evaluate
from transduce.vocab import UNK, build_codecs


PAIRS = [("cat", "K AE T"), ("dog", "D AO G"), ("bird", "B ER D"), ("fish", "F IH SH"),
         ("cow", "K AW"), ("goat", "G OW T")]
TEXTS = ["goat", "c", "", "fishcat", "dog", "bird", "", "catdogfish"]


CFG = {
    "model": {"family": "luong", "cell": "lstm", "emb_dim": 16, "hidden": 24, "enc_layers": 1,
              "dec_layers": 1, "dropout": 0.0, "emb_dropout": 0.0, "init_range": 0.3},
    "tokenizer": {"src": "char", "tgt": "whitespace"},
    "search": {"batch_size": 3, "beam": 3, "max_len_a": 1.0, "max_len_b": 2},
    "data": {"max_len": 10},
}
_TRAINED: dict = {}


def trained_state(cfg, src_codec, tgt_codec):
    """Weights of a tiny model fitted for a few steps to PAIRS (cached)."""
    from transduce.batching import collate, encode_pairs
    from transduce.loss import masked_cross_entropy
    from transduce.model import Seq2Seq

    if not _TRAINED:
        torch.manual_seed(0)
        model = Seq2Seq.from_config(cfg.model, len(src_codec.vocab), len(tgt_codec.vocab))
        batch = collate(encode_pairs(PAIRS, src_codec, tgt_codec), range(len(PAIRS)))
        opt = torch.optim.Adam(model.parameters(), lr=0.03)
        for _ in range(40):
            out = model(batch.src, batch.src_lengths, batch.tgt_in)
            loss = masked_cross_entropy(out.logits, batch.tgt_out)
            opt.zero_grad()
            (loss.loss_sum / loss.n_tokens).backward()
            opt.step()
        _TRAINED.update(model.state_dict())
    return _TRAINED


def make_translator(**kw):
    from transduce.model import Seq2Seq

    cfg = config_mod.from_dict(CFG)
    src_codec, tgt_codec = build_codecs(cfg.tokenizer, PAIRS)
    model = Seq2Seq.from_config(cfg.model, len(src_codec.vocab), len(tgt_codec.vocab))
    model.load_state_dict(trained_state(cfg, src_codec, tgt_codec))
    return Translator(model.eval(), cfg, src_codec, tgt_codec, **kw)


@pytest.fixture(scope="module")
def tr():
    return make_translator()


def test_order_kept_and_batched_equals_single(tr):
    out = tr.translate(TEXTS)
    assert len(out) == len(TEXTS)
    for text, res in zip(TEXTS, out):
        single = tr.translate([text])[0]
        assert res.text == single.text
        assert res.score == pytest.approx(single.score, abs=1e-5)
        assert res.src_tokens == list(text)
    assert len({r.text for r in out if r.src_tokens}) > 1  # not one constant output


def test_empty_inputs_do_not_run_the_model(tr, monkeypatch):
    def boom(*args):
        raise AssertionError("model run on empty input")

    monkeypatch.setattr(tr.model, "encode", boom)
    out = tr.translate(["", ""], return_attention=True)
    assert [(r.text, r.score, r.tokens, r.src_tokens, r.attention, r.nbest) for r in out] == \
        [("", 0.0, [], [], [], [("", 0.0)])] * 2
    assert tr.translate([]) == []


def test_overlong_inputs_are_cut_and_warned_once():
    tr = make_translator(max_src_len=4)
    with pytest.warns(UserWarning, match="cut to 4 tokens"):
        long = tr.translate(["catdogfish", "fishgoat", "cow"])
    assert [r.truncated for r in long] == [True, True, False]
    assert long[0].src_tokens == list("catd")
    assert long[0].text == tr.translate(["catd"])[0].text
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tr.translate(["catdogfish"])  # second time: no warning
    assert make_translator().max_src_len == 20  # default 2 * data.max_len


def test_tokens_text_and_attention(tr):
    out = tr.translate(["goat", "fishcat"], return_attention=True)
    for res in out:
        assert res.text == " ".join(res.tokens)
        assert len(res.attention) == len(res.tokens)
        assert all(len(row) == len(res.src_tokens) for row in res.attention)
        assert all(sum(row) == pytest.approx(1.0, abs=1e-5) for row in res.attention)
    assert tr.translate(["goat"])[0].attention is None


def test_nbest_sorted_and_first_is_best(tr):
    res = tr.translate(["fishcat"], beam=4, nbest=3)[0]
    assert len(res.nbest) == 3
    assert res.nbest[0] == (res.text, res.score)
    scores = [s for _, s in res.nbest]
    assert scores == sorted(scores, reverse=True)


def test_methods_greedy_sample_and_options(tr):
    greedy = tr.translate(TEXTS, method="greedy")
    beam1 = tr.translate(TEXTS, beam=1, length_penalty="none")
    assert [g.text for g in greedy] == [b.text for b in beam1]
    assert [g.score for g in greedy] == pytest.approx([b.score for b in beam1], abs=1e-5)
    topk1 = tr.translate(TEXTS, method="sample", top_k=1, seed=5)
    assert [t.text for t in topk1] == [g.text for g in greedy]
    s1 = tr.translate(TEXTS * 3, method="sample", temperature=1.5, seed=7)
    s2 = tr.translate(TEXTS * 3, method="sample", temperature=1.5, seed=7)
    assert [t.text for t in s1] == [t.text for t in s2]
    with pytest.raises(UserError, match="nbest"):
        tr.translate(["cat"], beam=2, nbest=3)
    with pytest.raises(UserError, match="method"):
        tr.translate(["cat"], method="viterbi")


def test_config_defaults_used(tr):
    opts = tr.options()
    assert opts is tr.config.search
    assert (opts.beam, opts.max_len_a, opts.max_len_b, opts.length_penalty) == (3, 1.0, 2, "gnmt")
    assert tr.options(beam=7, alpha=0.0).beam == 7


def test_keywords_apply_on_top_of_given_options(tr):
    greedy = tr.options(method="greedy")
    assert tr.options(greedy, max_len=1) == dataclasses.replace(greedy, max_len=1)
    out = tr.translate(TEXTS, greedy, max_len=1)  # never silently ignored
    assert all(len(r.tokens) <= 1 for r in out)
    assert [r.text for r in out] == [r.text for r in tr.translate(TEXTS, method="greedy", max_len=1)]
    with pytest.raises(TypeError, match="unknown decoding option.*bem"):
        tr.translate(["cat"], bem=3)


def test_max_len_and_min_len(tr):
    for res in tr.translate(TEXTS, max_len=2, min_len=2):
        assert len(res.tokens) == (2 if res.src_tokens else 0)


def test_stream_equals_list(tr):
    lines = [t + "\n" for t in TEXTS]
    streamed = list(tr.translate_stream(iter(lines), beam=2, chunk_size=3))
    listed = tr.translate(TEXTS, beam=2)
    assert [r.text for r in streamed] == [r.text for r in listed]
    streamed = list(tr.translate_stream(iter(lines), tr.options(method="greedy"), chunk_size=1))
    assert [r.text for r in streamed] == [r.text for r in tr.translate(TEXTS, method="greedy")]


def test_train_mode_restored(tr):
    tr.model.train()
    tr.translate(["cat"])
    assert tr.model.training
    tr.model.eval()


def test_replace_unk():
    tr = make_translator()
    with torch.no_grad():  # the model now says <unk> (then EOS) whatever the input
        tr.model.decoder.out.bias[UNK] += 50.0
    plain = tr.translate(["goat", "dog"], max_len=2)
    assert all(r.tokens == ["<unk>", "<unk>"] for r in plain)
    out = tr.translate(["goat", "dog"], max_len=2, replace_unk=True, return_attention=True)
    for res in out:
        assert res.tokens != ["<unk>", "<unk>"]
        for i, piece in enumerate(res.tokens):
            row = res.attention[i]
            assert piece == res.src_tokens[max(range(len(row)), key=row.__getitem__)]


def test_from_dir_and_precisions(tmp_path, tr):
    from transduce.checkpoint import save_model

    save_model(tmp_path / "m", tr.model, tr.config, tr.src_codec, tr.tgt_codec)
    loaded = Translator.from_dir(tmp_path / "m")
    ref = tr.translate(TEXTS)
    assert [r.text for r in loaded.translate(TEXTS)] == [r.text for r in ref]
    int8 = Translator.from_dir(tmp_path / "m", precision="int8")
    assert any(m._get_name().startswith("DynamicQuantized") for m in int8.model.modules())
    bf16 = Translator.from_dir(tmp_path / "m", precision="bf16")
    for low in (int8, bf16):
        out = low.translate(TEXTS)
        assert [bool(r.src_tokens) for r in out] == [bool(r.src_tokens) for r in ref]
        assert all(math.isfinite(r.score) for r in out)
    # a loaded model is its Translator's own: bf16 casts its weights once; a shared one
    # (validation over the live model) keeps fp32 weights and runs under autocast
    assert {p.dtype for p in bf16.model.parameters()} == {torch.bfloat16}
    shared = Translator(tr.model, tr.config, tr.src_codec, tr.tgt_codec, precision="bf16")
    assert {p.dtype for p in shared.model.parameters()} == {torch.float32}
    assert [len(r.tokens) > 0 for r in shared.translate(TEXTS)] == [len(r.tokens) > 0 for r in ref]
    assert bf16.nll(["goat"], [ref[0].text]).loss == pytest.approx(tr.nll(["goat"], [ref[0].text]).loss, rel=0.05)
    with pytest.raises(UserError, match="precision"):
        Translator.from_dir(tmp_path / "m", precision="fp8")


def test_evaluate_against_own_outputs(tr):
    sources = ["goat", "fishcat", "dog", "bird"]
    hyps = [r.text for r in tr.translate(sources, method="greedy")]
    result = evaluate(tr, sources, hyps, metrics=["wer", "per", "ser", "chrf", "ppl"],
                      options=tr.options(method="greedy"))
    assert result["wer"] == 0.0 and result["per"] == 0.0 and result["ser"] == 0.0
    assert result["chrf"] == pytest.approx(100.0) and "chrf_signature" in result
    assert result["sentences"] == 4 and result["hypotheses"] == hyps
    # teacher-forced NLL of the greedy outputs equals minus their greedy log-probability
    greedy = tr.translate(sources, method="greedy")
    assert all(len(g.tokens) < len(s) + 2 for g, s in zip(greedy, sources))  # all ended with EOS
    assert result["nll"] == pytest.approx(-sum(g.logprob for g in greedy), rel=1e-4)
    assert result["n_tokens"] == sum(len(g.tokens) + 1 for g in greedy)
    assert result["ppl"] == pytest.approx(math.exp(result["nll"] / result["n_tokens"]))
    with pytest.raises(UserError, match="2 source lines but 1 reference"):
        evaluate(tr, ["a", "b"], ["x"])


@pytest.mark.parametrize("texts, message", [
    ("goat", "not a single str"), (b"goat", "not a single bytes"), (None, "got NoneType"),
    (5, "got int"), (["ok", None], r"texts\[1\] must be a str, got NoneType"),
])
def test_texts_of_the_wrong_type_are_a_type_error_naming_them(tr, texts, message):
    with pytest.raises(TypeError, match=message):
        tr.translate(texts)


@pytest.mark.parametrize("method", ["beam", "greedy", "sample"])
def test_a_model_with_nan_weights_still_answers_every_input(method):
    tr = make_translator()
    with torch.no_grad():
        tr.model.decoder.out.bias.fill_(float("nan"))
    out = tr.translate(TEXTS, method=method, seed=0)
    assert len(out) == len(TEXTS)
