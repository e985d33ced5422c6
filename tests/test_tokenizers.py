"""Tests for transduce.tokenizers: round trips, save/load, training options."""
from __future__ import annotations

import pytest

from transduce.config import from_dict

from transduce.config import TokenizerConfig
from transduce.errors import CheckpointError, ConfigError
from transduce.tokenizers import (SPACE, CharTokenizer, Reversed, Tokenizer, WhitespaceTokenizer,
                                  train_sentencepiece, train_tokenizers)
from transduce.vocab import build_codecs

PAIRS = [
    ("ein kleiner hund läuft", "a small dog runs"),
    ("zwei männer spielen fußball", "two men play football"),
    ("eine frau liest ein buch", "a woman reads a book"),
    ("der hund springt über den zaun", "the dog jumps over the fence"),
    ("kinder spielen im park", "children play in the park"),
] * 4


def test_char_round_trip_keeps_spaces():
    tok = CharTokenizer()
    text = "  Grüße,  Welt! "
    pieces = tok.encode(text)
    assert pieces[:3] == [SPACE, SPACE, "G"] and " " not in pieces
    assert tok.decode(pieces) == text
    assert tok.encode_batch(["ab", "c d"]) == [["a", "b"], ["c", SPACE, "d"]]


def test_whitespace_round_trip():
    tok = WhitespaceTokenizer()
    assert tok.encode("HH  AH0 L\tOW1") == ["HH", "AH0", "L", "OW1"]
    assert tok.decode(tok.encode("HH AH0 L OW1")) == "HH AH0 L OW1"


def test_lowercase_option():
    assert CharTokenizer(lowercase=True).encode("AbC") == ["a", "b", "c"]
    assert WhitespaceTokenizer(lowercase=True).encode("Hello World") == ["hello", "world"]


@pytest.mark.parametrize("kind", ["bpe", "unigram"])
def test_sentencepiece_round_trip_and_batch(kind):
    tok = train_sentencepiece((t for p in PAIRS for t in p), kind, vocab_size=60)
    assert tok.kind == kind
    for src, tgt in PAIRS[:5]:
        assert tok.decode(tok.encode(src)) == src
        assert tok.decode(tok.encode(tgt)) == tgt
    texts = [p[0] for p in PAIRS[:5]]
    assert tok.encode_batch(texts) == [tok.encode(t) for t in texts]
    assert tok.encode("a small dog")[0].startswith(SPACE)
    assert len(tok.inventory()) <= 60


@pytest.mark.parametrize("kind", ["bpe", "unigram"])
def test_sentencepiece_tiny_corpus_large_vocab(kind):
    tok = train_sentencepiece(["ab ba", "abc"], kind, vocab_size=8000)
    assert tok.decode(tok.encode("ab abc")) == "ab abc"
    assert 3 <= tok.sp.get_piece_size() < 8000


@pytest.mark.parametrize("kind", ["char", "whitespace", "bpe", "unigram"])
def test_save_load_same_encoding(tmp_path, kind):
    cfg = TokenizerConfig(src=kind, tgt=kind, vocab_size=50, lowercase=True)
    src_tok, tgt_tok = train_tokenizers(cfg, PAIRS)
    src_tok.save(tmp_path, "src")
    loaded = Tokenizer.load(tmp_path, "src")
    assert type(loaded) is type(src_tok) and loaded.kind == kind and loaded.lowercase
    text = "Ein Hund spielt im Park"
    assert loaded.encode(text) == src_tok.encode(text)
    assert loaded.decode(loaded.encode(text)) == text.lower()


def test_separate_and_joint_training():
    pairs = [("aab abb", "xyz zy"), ("ba ab", "yx")] * 3
    src, tgt = train_tokenizers(TokenizerConfig(src="bpe", tgt="char", vocab_size=40), pairs)
    assert src.kind == "bpe" and isinstance(tgt, CharTokenizer)
    # a separate source model never sees the target side
    assert not any(set(p) & set("xyz") for p in src.inventory())
    assert {"a", "b"} <= set("".join(src.inventory()))
    a, b = train_tokenizers(TokenizerConfig(src="unigram", tgt="unigram", joint=True,
                                            vocab_size=80), PAIRS)
    assert a is b
    with pytest.raises(ConfigError, match="tokenizer.joint"):  # refused before any training
        from_dict({"tokenizer": {"src": "bpe", "tgt": "char", "joint": True}})


def test_load_missing_or_corrupt(tmp_path):
    with pytest.raises(CheckpointError, match="tokenizer file missing: .*src.tokenizer.json"):
        Tokenizer.load(tmp_path, "src")
    (tmp_path / "tgt.tokenizer.json").write_text('{"kind": "bpe", "lowercase": false}')
    with pytest.raises(CheckpointError, match="sentencepiece model missing: .*tgt.spm.model"):
        Tokenizer.load(tmp_path, "tgt")
    (tmp_path / "tgt.spm.model").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="corrupt sentencepiece model"):
        Tokenizer.load(tmp_path, "tgt")
    (tmp_path / "x.tokenizer.json").write_text('{"kind": "morfessor"}')
    with pytest.raises(CheckpointError, match="corrupt tokenizer file"):
        Tokenizer.load(tmp_path, "x")


@pytest.mark.parametrize("kind", ["char", "whitespace", "bpe"])
def test_lone_surrogates_become_replacement_characters(kind):
    tok = train_tokenizers(TokenizerConfig(src=kind, tgt=kind, vocab_size=40), PAIRS)[0]
    assert tok.encode("a \ud800b") == tok.encode("a \ufffdb")
    assert tok.encode_batch(["\udfff"]) == [tok.encode("\ufffd")]


@pytest.mark.parametrize("kind", ["char", "whitespace", "bpe"])
def test_reverse_target_reverses_the_targets_pieces_only(tmp_path, kind):
    cfg = TokenizerConfig(src=kind, tgt=kind, vocab_size=50, reverse_target=True)
    src, tgt = train_tokenizers(cfg, PAIRS)
    assert isinstance(tgt, Reversed) and not isinstance(src, Reversed)
    plain = tgt.inner  # the tokenizer the target side would have without reverse_target
    assert type(plain) is type(src) and tgt.kind == plain.kind == src.kind
    text = "a small dog runs"
    assert tgt.encode(text) == plain.encode(text)[::-1] and len(tgt.encode(text)) > 1
    assert tgt.encode_batch([text, "two men"]) == [plain.encode(text)[::-1], plain.encode("two men")[::-1]]
    assert tgt.decode(tgt.encode(text)) == plain.decode(plain.encode(text)) == text
    tgt.save(tmp_path, "tgt")
    loaded = Tokenizer.load(tmp_path, "tgt")
    assert isinstance(loaded, Reversed) and loaded.encode(text) == tgt.encode(text)
    assert loaded.decode(loaded.encode(text)) == text


def test_reverse_target_with_a_joint_vocabulary():
    cfg = TokenizerConfig(src="bpe", tgt="bpe", joint=True, vocab_size=60, reverse_target=True)
    src, tgt = build_codecs(cfg, PAIRS)
    assert src.vocab is tgt.vocab and tgt.tokenizer.inner is src.tokenizer
    assert tgt.encode("a small dog") == src.encode("a small dog")[::-1]
    assert tgt.decode(tgt.encode("a small dog")) == src.decode(src.encode("a small dog")) == "a small dog"


def test_a_corrupt_reverse_flag_is_refused(tmp_path):
    (tmp_path / "tgt.tokenizer.json").write_text('{"kind": "char", "lowercase": false, "reverse": "yes"}')
    with pytest.raises(CheckpointError, match="tgt.tokenizer.json: corrupt tokenizer file.*'reverse'"):
        Tokenizer.load(tmp_path, "tgt")
