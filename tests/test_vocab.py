"""Tests for transduce.vocab: special ids, building, encode/decode, save/load, Codec."""
from __future__ import annotations

import pytest

from transduce.config import TokenizerConfig
from transduce.errors import CheckpointError
from transduce.tokenizers import CharTokenizer, WhitespaceTokenizer
from transduce.vocab import BOS, EOS, PAD, UNK, Codec, Vocab, build_codecs

PAIRS = [("hello world", "HH AH0 L OW1 W ER1 L D"), ("low", "L OW1"), ("hell", "HH EH1 L")] * 3


def test_special_ids():
    assert (PAD, UNK, BOS, EOS) == (0, 1, 2, 3)
    v = Vocab.build([["a"]])
    assert v.itos[:4] == ["<pad>", "<unk>", "<bos>", "<eos>"] and v.encode(["a"]) == [4]


def test_build_order_min_freq_max_size():
    lists = [["b", "a", "c"], ["a", "b"], ["a", "d"]]
    v = Vocab.build(lists)
    assert v.itos[4:] == ["a", "b", "c", "d"]  # by count, ties alphabetical
    assert Vocab.build(lists, min_freq=2).itos[4:] == ["a", "b"]
    assert Vocab.build(lists, max_size=5).itos[4:] == ["a"]
    assert len(Vocab.build(lists, extra=["z", "a"])) == 9


def test_encode_decode():
    v = Vocab.build([["x", "y", "z"]])
    ids = v.encode(["x", "q", "z"])
    assert ids == [v.stoi["x"], UNK, v.stoi["z"]]
    assert v.decode([BOS, v.stoi["y"], PAD, v.stoi["x"], EOS, v.stoi["z"]]) == ["y", "x"]
    assert v.decode(ids) == ["x", "<unk>", "z"]


def test_save_load(tmp_path):
    v = Vocab.build([["ü", "▁", "a"]])
    v.save(tmp_path / "v.json")
    assert Vocab.load(tmp_path / "v.json") == v
    with pytest.raises(CheckpointError, match="vocabulary file missing: .*nope.json"):
        Vocab.load(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(CheckpointError, match="bad.json: corrupt vocabulary"):
        Vocab.load(tmp_path / "bad.json")


def test_codec_round_trip_and_save_load(tmp_path):
    src_tok = CharTokenizer()
    codec = Codec(src_tok, Vocab.build(src_tok.encode_batch([s for s, _ in PAIRS])))
    ids = codec.encode("hello low")
    assert UNK not in ids and codec.decode(ids + [EOS, 7]) == "hello low"
    assert codec.pieces(ids[:2]) == ["h", "e"]
    assert codec.encode_batch(["low", "hell"]) == [codec.encode("low"), codec.encode("hell")]
    codec.save(tmp_path, "src")
    assert {p.name for p in tmp_path.iterdir()} == {"src.tokenizer.json", "src.vocab.json"}
    loaded = Codec.load(tmp_path, "src")
    assert loaded.vocab == codec.vocab and loaded.encode("hello") == codec.encode("hello")


def test_build_codecs_separate_and_joint(tmp_path):
    src, tgt = build_codecs(TokenizerConfig(src="char", tgt="whitespace"), PAIRS)
    assert isinstance(tgt.tokenizer, WhitespaceTokenizer)
    assert tgt.decode(tgt.encode("HH AH0 L OW1")) == "HH AH0 L OW1"
    assert len(src) == 4 + len(set("hello world low hell".replace(" ", "▁")))
    a, b = build_codecs(TokenizerConfig(src="bpe", tgt="bpe", joint=True, vocab_size=40), PAIRS)
    assert a is b
    # every piece the sentencepiece model can produce has an id
    assert all(p in a.vocab for p in a.tokenizer.inventory())
    assert a.decode(a.encode("HH AH0 hello")) == "HH AH0 hello"
    a.save(tmp_path, "tgt")
    assert (tmp_path / "tgt.spm.model").is_file()
    assert Codec.load(tmp_path, "tgt").encode("low OW1") == a.encode("low OW1")
