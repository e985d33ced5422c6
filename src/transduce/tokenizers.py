"""Tokenizers: text <-> pieces (strings), one per side of a corpus.

Kinds (:data:`KINDS`):

* ``char`` - one piece per character; a space becomes the visible piece
  ``"▁"`` (U+2581) so that ``decode(encode(text)) == text`` exactly (a literal
  U+2581 in the input decodes to a space).
* ``whitespace`` - pieces are ``text.split()``; decoding joins with one space,
  so it round-trips text whose whitespace is single spaces.
* ``bpe`` / ``unigram`` - a sentencepiece model trained on the training pairs
  (one model for both sides when ``tokenizer.joint``), with
  ``hard_vocab_limit=False`` so that a tiny corpus gives a smaller vocabulary
  rather than an error. sentencepiece normalises text (NFKC, repeated spaces
  collapsed); decode round-trips normalised text.

``tokenizer.lowercase`` lowercases before encoding (decoding cannot restore
case). ``tokenizer.reverse_target`` wraps the target side's tokenizer in
:class:`Reversed`: its pieces come in reverse order, so a model trained on them
writes its output right to left, and decoding puts the pieces back in order (such a
model rescores a left-to-right model's hypotheses: ``transduce ensemble --rescore``).
A tokenizer saves into a model folder as ``<prefix>.tokenizer.json`` (kind and
options) plus ``<prefix>.spm.model`` for sentencepiece kinds.
"""
from __future__ import annotations

import io
import json
import re
from functools import partial
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import sentencepiece as spm

from .errors import CheckpointError, DataError

SPACE = "\u2581"
"""The visible space piece of char tokenization (same symbol as sentencepiece)."""


class Tokenizer:
    """Base class: ``encode`` text to pieces, ``decode`` pieces to text."""

    kind = ""

    def __init__(self, lowercase: bool = False):
        self.lowercase = lowercase

    def _prep(self, text: str) -> str:
        """Lowercased if asked; lone surrogates (possible in Python strings and JSON, never
        in UTF-8 text) become U+FFFD, so that every tokenizer can encode any str."""
        text = _LONE_SURROGATE.sub("\ufffd", text)
        return text.lower() if self.lowercase else text

    def encode(self, text: str) -> list[str]:
        raise NotImplementedError

    def encode_batch(self, texts: Sequence[str]) -> list[list[str]]:
        """``[self.encode(t) for t in texts]``, faster where the kind allows."""
        return [self.encode(t) for t in texts]

    def decode(self, pieces: Sequence[str]) -> str:
        raise NotImplementedError

    def inventory(self) -> list[str] | None:
        """Every piece the model can produce (sentencepiece), or None (open set)."""
        return None

    def meta(self) -> dict:
        """What ``<prefix>.tokenizer.json`` holds: kind and options."""
        return {"kind": self.kind, "lowercase": self.lowercase}

    def save_files(self, folder: Path, prefix: str) -> None:
        """Write the model files beside ``<prefix>.tokenizer.json`` (none by default)."""

    def save(self, folder: str | Path, prefix: str) -> None:
        """Write ``<prefix>.tokenizer.json`` (+ model files) into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{prefix}.tokenizer.json").write_text(json.dumps(self.meta()) + "\n", encoding="utf-8")
        self.save_files(folder, prefix)

    @staticmethod
    def load(folder: str | Path, prefix: str) -> "Tokenizer":
        """Read a tokenizer written by :meth:`save`."""
        path = Path(folder) / f"{prefix}.tokenizer.json"
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
            loader = KINDS[meta["kind"]]
            lowercase, reverse = bool(meta.get("lowercase", False)), meta.get("reverse", False)
            if not isinstance(reverse, bool):
                raise TypeError(f"'reverse' must be true or false, got {reverse!r}")
        except FileNotFoundError:
            raise CheckpointError(f"tokenizer file missing: {path}") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{path}: corrupt tokenizer file ({exc!r})") from None
        tok = loader(Path(folder), prefix, lowercase)
        return Reversed(tok) if reverse else tok

    def __repr__(self) -> str:
        return f"{type(self).__name__}(lowercase={self.lowercase})"


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class CharTokenizer(Tokenizer):
    """Characters, with spaces as the visible piece ``▁``."""

    kind = "char"

    def encode(self, text: str) -> list[str]:
        return list(self._prep(text).replace(" ", SPACE))

    def decode(self, pieces: Sequence[str]) -> str:
        return "".join(pieces).replace(SPACE, " ")


class WhitespaceTokenizer(Tokenizer):
    """Whitespace-separated words."""

    kind = "whitespace"

    def encode(self, text: str) -> list[str]:
        return self._prep(text).split()

    def decode(self, pieces: Sequence[str]) -> str:
        return " ".join(pieces)


class SentencePieceTokenizer(Tokenizer):
    """A trained sentencepiece model (BPE or unigram), kept as serialized bytes."""

    kind = "sentencepiece"

    def __init__(self, model_proto: bytes, kind: str, lowercase: bool = False):
        super().__init__(lowercase)
        self.kind = kind
        self.model_proto = model_proto
        self.sp = spm.SentencePieceProcessor(model_proto=model_proto)

    def encode(self, text: str) -> list[str]:
        return self.sp.encode(self._prep(text), out_type=str)

    def encode_batch(self, texts: Sequence[str]) -> list[list[str]]:
        """sentencepiece's batch encoder (C++ loop, one thread per core)."""
        return self.sp.encode([self._prep(t) for t in texts], out_type=str)

    def decode(self, pieces: Sequence[str]) -> str:
        return self.sp.decode_pieces(list(pieces))

    def inventory(self) -> list[str]:
        return [self.sp.id_to_piece(i) for i in range(self.sp.get_piece_size())
                if not (self.sp.is_unknown(i) or self.sp.is_control(i))]

    def save_files(self, folder: Path, prefix: str) -> None:
        (folder / f"{prefix}.spm.model").write_bytes(self.model_proto)

    def __repr__(self) -> str:
        return (f"SentencePieceTokenizer(kind={self.kind!r}, pieces={self.sp.get_piece_size()}, "
                f"lowercase={self.lowercase})")


class Reversed(Tokenizer):
    """Another tokenizer's pieces in reverse order (``tokenizer.reverse_target``): a
    model trained on them reads and writes the target right to left; ``decode`` takes
    pieces in that order and gives the text in its own."""

    def __init__(self, inner: Tokenizer):
        super().__init__(inner.lowercase)
        self.inner = inner
        self.kind = inner.kind

    def encode(self, text: str) -> list[str]:
        return self.inner.encode(text)[::-1]

    def encode_batch(self, texts: Sequence[str]) -> list[list[str]]:
        return [pieces[::-1] for pieces in self.inner.encode_batch(texts)]

    def decode(self, pieces: Sequence[str]) -> str:
        return self.inner.decode(list(pieces)[::-1])

    def inventory(self) -> list[str] | None:
        return self.inner.inventory()

    def meta(self) -> dict:
        return {**self.inner.meta(), "reverse": True}

    def save_files(self, folder: Path, prefix: str) -> None:
        self.inner.save_files(folder, prefix)

    def __repr__(self) -> str:
        return f"Reversed({self.inner!r})"


def _load_spm(kind: str, folder: Path, prefix: str, lowercase: bool) -> SentencePieceTokenizer:
    path = folder / f"{prefix}.spm.model"
    try:
        return SentencePieceTokenizer(path.read_bytes(), kind, lowercase)
    except FileNotFoundError:
        raise CheckpointError(f"sentencepiece model missing: {path}") from None
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: corrupt sentencepiece model ({exc})") from None


SIMPLE = {"char": CharTokenizer, "whitespace": WhitespaceTokenizer}
"""Kinds that need no training."""

KINDS = {
    "char": lambda folder, prefix, lowercase: CharTokenizer(lowercase),
    "whitespace": lambda folder, prefix, lowercase: WhitespaceTokenizer(lowercase),
    "bpe": partial(_load_spm, "bpe"),
    "unigram": partial(_load_spm, "unigram"),
}
"""kind -> loader(folder, prefix, lowercase) used by Tokenizer.load."""


# --- training ------------------------------------------------------------------

def train_sentencepiece(texts: Iterable[str], kind: str, vocab_size: int,
                        character_coverage: float = 1.0, lowercase: bool = False,
                        seed_sentences: int = 2_000_000) -> SentencePieceTokenizer:
    """Train a BPE/unigram sentencepiece model from an iterator of texts.

    The model is written to memory (no temporary files); sentencepiece's own
    special pieces are only ``<unk>`` (ids come from :mod:`transduce.vocab`).
    At most ``seed_sentences`` sentences are sampled for training.
    """
    stream: Iterator[str] = (t.lower() if lowercase else t for t in texts)
    writer = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=stream, model_writer=writer, model_type=kind,
            vocab_size=vocab_size, hard_vocab_limit=False,
            character_coverage=character_coverage, input_sentence_size=seed_sentences,
            shuffle_input_sentence=True, pad_id=-1, bos_id=-1, eos_id=-1, unk_id=0,
            minloglevel=2, num_threads=2)
    except RuntimeError as exc:
        raise DataError(f"cannot train a {kind} sentencepiece model with "
                        f"tokenizer.vocab_size={vocab_size}: {exc}") from None
    return SentencePieceTokenizer(writer.getvalue(), kind, lowercase)


def _texts(pairs: Sequence[tuple[str, str]], sides: tuple[int, ...]) -> Iterator[str]:
    for pair in pairs:
        for side in sides:
            yield pair[side]


def _build(kind: str, tok_cfg, pairs, sides: tuple[int, ...]) -> Tokenizer:
    if kind in ("bpe", "unigram"):
        return train_sentencepiece(_texts(pairs, sides), kind, tok_cfg.vocab_size,
                                   tok_cfg.character_coverage, tok_cfg.lowercase)
    return SIMPLE[kind](lowercase=tok_cfg.lowercase)


def train_tokenizers(tok_cfg, train_pairs: Sequence[tuple[str, str]]) -> tuple[Tokenizer, Tokenizer]:
    """(src, tgt) tokenizers for a TokenizerConfig; one model for both sides if joint
    (config.py checks that joint has src == tgt): the same object twice, or the target's
    wrapped in :class:`Reversed` with ``reverse_target``. sentencepiece trains from an
    in-memory iterator and keeps its model in memory."""
    if tok_cfg.joint:
        src = tgt = _build(tok_cfg.src, tok_cfg, train_pairs, (0, 1))
    else:
        src, tgt = (_build(tok_cfg.src, tok_cfg, train_pairs, (0,)),
                    _build(tok_cfg.tgt, tok_cfg, train_pairs, (1,)))
    return src, Reversed(tgt) if tok_cfg.reverse_target else tgt
