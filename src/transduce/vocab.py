"""Vocabularies (pieces <-> ids) and Codecs (text <-> ids for one side).

Special ids are fixed: ``PAD, UNK, BOS, EOS = 0, 1, 2, 3``. Other pieces
follow by descending training frequency (ties alphabetical), so building is
deterministic. A vocabulary saves as JSON ``{"tokens": [...]}`` (ids are list
positions). For sentencepiece tokenizers, :func:`build_codecs` also adds every
piece of the model's inventory, so that no piece it can emit is unknown.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

from .errors import CheckpointError
from .tokenizers import Tokenizer, train_tokenizers

PAD, UNK, BOS, EOS = 0, 1, 2, 3
SPECIALS = ["<pad>", "<unk>", "<bos>", "<eos>"]


class Vocab:
    """Pieces <-> ids with fixed special ids."""

    def __init__(self, tokens: Sequence[str]):
        if list(tokens[:4]) != SPECIALS:
            raise ValueError(f"a vocabulary must start with {SPECIALS}")
        self.itos = list(tokens)
        self.stoi = {tok: i for i, tok in enumerate(self.itos)}

    @classmethod
    def build(cls, token_lists: Iterable[Sequence[str]], min_freq: int = 1,
              max_size: int | None = None, extra: Iterable[str] = ()) -> "Vocab":
        """Count pieces; keep those seen ``min_freq`` times, the ``max_size``
        most frequent (specials included in the size); then ``extra`` pieces."""
        counts: Counter[str] = Counter()
        for tokens in token_lists:
            counts.update(tokens)
        ranked = sorted((t for t, c in counts.items() if c >= min_freq and t not in SPECIALS),
                        key=lambda t: (-counts[t], t))
        tokens = SPECIALS + ranked
        seen = set(tokens)
        tokens += [t for t in dict.fromkeys(extra) if t not in seen]
        if max_size is not None:
            tokens = tokens[:max(max_size, len(SPECIALS))]
        return cls(tokens)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def encode(self, pieces: Sequence[str]) -> list[int]:
        """Piece -> id, unknown pieces -> UNK. No BOS/EOS added."""
        get = self.stoi.get
        return [get(p, UNK) for p in pieces]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Id -> piece, stopping at EOS and dropping PAD and BOS."""
        out = []
        for i in ids:
            i = int(i)
            if i == EOS:
                break
            if i not in (PAD, BOS):
                out.append(self.itos[i] if 0 <= i < len(self.itos) else SPECIALS[UNK])
        return out

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"tokens": self.itos}, ensure_ascii=False) + "\n",
                              encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "Vocab":
        path = Path(path)
        try:
            return cls(json.loads(path.read_text(encoding="utf-8"))["tokens"])
        except FileNotFoundError:
            raise CheckpointError(f"vocabulary file missing: {path}") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{path}: corrupt vocabulary file ({exc})") from None

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocab) and self.itos == other.itos

    def __repr__(self) -> str:
        return f"Vocab(size={len(self)})"


class Codec:
    """One side's tokenizer + vocabulary: text <-> ids (no BOS/EOS)."""

    def __init__(self, tokenizer: Tokenizer, vocab: Vocab):
        self.tokenizer = tokenizer
        self.vocab = vocab

    def encode(self, text: str) -> list[int]:
        return self.vocab.encode(self.tokenizer.encode(text))

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        encode = self.vocab.encode
        return [encode(p) for p in self.tokenizer.encode_batch(texts)]

    def pieces(self, ids: Iterable[int]) -> list[str]:
        """Ids -> pieces (stops at EOS, drops PAD/BOS), e.g. for attention plots."""
        return self.vocab.decode(ids)

    def decode(self, ids: Iterable[int]) -> str:
        return self.tokenizer.decode(self.vocab.decode(ids))

    def save(self, folder: str | Path, prefix: str) -> None:
        """Write ``<prefix>.tokenizer.json`` (+ ``.spm.model``) and ``<prefix>.vocab.json``."""
        self.tokenizer.save(folder, prefix)
        self.vocab.save(Path(folder) / f"{prefix}.vocab.json")

    @classmethod
    def load(cls, folder: str | Path, prefix: str) -> "Codec":
        return cls(Tokenizer.load(folder, prefix), Vocab.load(Path(folder) / f"{prefix}.vocab.json"))

    def __len__(self) -> int:
        return len(self.vocab)


def build_codecs(tok_cfg, train_pairs: Sequence[tuple[str, str]]) -> tuple[Codec, Codec]:
    """Train tokenizers and build vocabularies from training pairs: (src, tgt).

    Joint (``tokenizer.joint``): one tokenizer and one vocabulary for both
    sides (the same Codec twice; with ``tokenizer.reverse_target`` the target's
    tokenizer is the source's reversed).
    ``tokenizer.min_freq`` / ``max_vocab`` apply.
    """
    src_tok, tgt_tok = train_tokenizers(tok_cfg, train_pairs)
    src_pieces = src_tok.encode_batch([s for s, _ in train_pairs])
    tgt_pieces = tgt_tok.encode_batch([t for _, t in train_pairs])

    def make(tok: Tokenizer, lists) -> Vocab:
        return Vocab.build(lists, tok_cfg.min_freq, tok_cfg.max_vocab, tok.inventory() or ())

    if tok_cfg.joint:
        src = Codec(src_tok, make(src_tok, src_pieces + tgt_pieces))
        return src, src if tgt_tok is src_tok else Codec(tgt_tok, src.vocab)
    return Codec(src_tok, make(src_tok, src_pieces)), Codec(tgt_tok, make(tgt_tok, tgt_pieces))
