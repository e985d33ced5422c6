"""Tests for transduce.corpora: readers, bad input, built-in corpora, splits."""
from __future__ import annotations

import gzip
import hashlib
import random
from pathlib import Path

import pytest
from num2words import num2words

from transduce import corpora
from transduce.config import DataConfig, from_dict
from transduce.errors import ConfigError, DataError

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
MULTI30K = SHARED / "data" / "multi30k"


def write(path: Path, text: str | bytes) -> Path:
    data = text.encode("utf-8") if isinstance(text, str) else text
    if path.suffix == ".gz":
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


# --- readers -------------------------------------------------------------------

def test_read_tsv_ignores_extra_columns_and_strips(tmp_path):
    f = write(tmp_path / "a.tsv", "Go.\tVe.\tCC-BY 2.0 (France) Attribution\r\n Hi. \t Hola. \n\n")
    extra: list[int] = []
    assert list(corpora.read_tsv(f, extra)) == [("Go.", "Ve."), ("Hi.", "Hola."), ("", "")]
    assert extra == [1]


def test_read_tsv_gz(tmp_path):
    f = write(tmp_path / "a.tsv.gz", "über\tüber\nb\tc\n")
    assert list(corpora.read_tsv(f)) == [("über", "über"), ("b", "c")]


def test_read_parallel_plain_and_gz(tmp_path):
    s = write(tmp_path / "s.txt", "a b\nc\n")
    t = write(tmp_path / "t.txt.gz", "x\ny z\n")
    assert list(corpora.read_parallel(s, t)) == [("a b", "x"), ("c", "y z")]
    assert list(corpora.read_files([str(s), str(t)])) == [("a b", "x"), ("c", "y z")]


def test_read_files_needs_one_or_two_paths(tmp_path):
    with pytest.raises(DataError, match="one TSV file or two parallel files, got 3"):
        corpora.read_files(["a", "b", "c"])


def test_tsv_line_without_tab_names_file_and_line(tmp_path):
    f = write(tmp_path / "bad.tsv", "a\tb\nc\td\nno tab here\n")
    with pytest.raises(DataError, match=r"bad\.tsv:3: no tab"):
        list(corpora.read_tsv(f))


@pytest.mark.parametrize("src_lines,tgt_lines", [(3, 2), (2, 4)])
def test_mismatched_line_counts(tmp_path, src_lines, tgt_lines):
    s = write(tmp_path / "s.txt", "a\n" * src_lines)
    t = write(tmp_path / "t.txt", "b\n" * tgt_lines)
    with pytest.raises(DataError) as err:
        list(corpora.read_parallel(s, t))
    msg = str(err.value)
    assert f"{s} has {src_lines} lines" in msg and f"has {tgt_lines}" in msg


def test_invalid_utf8_names_file_and_line(tmp_path):
    f = write(tmp_path / "bad.tsv.gz", b"a\tb\nok\tok\n\xff\xfe\tx\n")
    with pytest.raises(DataError, match=r"bad\.tsv\.gz:3: invalid UTF-8"):
        list(corpora.read_tsv(f))


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match="corpus file not found: .*nope.tsv"):
        list(corpora.read_tsv(tmp_path / "nope.tsv"))
    s = write(tmp_path / "s.txt", "a\n")
    with pytest.raises(DataError, match="not found: .*missing.txt"):
        list(corpora.read_parallel(s, tmp_path / "missing.txt"))


def test_corrupt_gzip(tmp_path):
    f = tmp_path / "x.tsv.gz"
    f.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match=r"x\.tsv\.gz: cannot read"):
        list(corpora.read_tsv(f))


# --- load_splits from files ----------------------------------------------------

def test_load_splits_files_drop_empty_and_count(tmp_path):
    train = write(tmp_path / "train.tsv", "a\t1\n\t2\nb\t\n\nc\t3\n")
    valid = write(tmp_path / "valid.tsv", "v\tw\n")
    cfg = DataConfig(corpus=None, train=[str(train)], valid=[str(valid)])
    splits = corpora.load_splits(cfg)
    assert splits.train == [("a", "1"), ("c", "3")]
    assert splits.valid == [("v", "w")] and splits.test == []
    st = splits.stats["train"]
    assert (st.read, st.empty, st.kept) == (5, 3, 2)


def test_load_splits_carves_valid_and_max_train(tmp_path):
    lines = "".join(f"s{i}\tt{i}\n" for i in range(200))
    train = write(tmp_path / "train.tsv", lines)
    cfg = DataConfig(corpus=None, train=[str(train)], seed=3)
    splits = corpora.load_splits(cfg)
    assert len(splits.valid) == 10 and len(splits.train) == 190
    assert not set(splits.valid) & set(splits.train)
    assert corpora.load_splits(cfg).valid == splits.valid  # seeded
    small = corpora.load_splits(DataConfig(corpus=None, train=[str(train)], max_train=50))
    assert len(small.train) == 50 and set(small.train) <= set(splits.train) | set(splits.valid)


def test_empty_corpus_is_an_error(tmp_path):
    train = write(tmp_path / "train.tsv", "\n\t\n")
    with pytest.raises(DataError, match=r"training corpus .*train.tsv is empty \(2 empty"):
        corpora.load_splits(DataConfig(corpus=None, train=[str(train)]))


def test_no_corpus_and_unknown_corpus():
    with pytest.raises(DataError, match="data.train"):
        corpora.load_splits(DataConfig(corpus=None))
    with pytest.raises(DataError, match="unknown corpus 'wmt14'"):
        corpora.load_splits(DataConfig(corpus="wmt14"))


# --- cmudict -------------------------------------------------------------------

@pytest.fixture(scope="module")
def cmu():
    return corpora.load_splits(DataConfig(corpus="cmudict"))


def test_cmudict_pairs_and_split(cmu):
    assert ("hello", "HH AH0 L OW1") in cmu.train + cmu.valid + cmu.test
    total = len(cmu.train) + len(cmu.valid) + len(cmu.test)
    assert 130_000 < total < 140_000
    assert 0.88 < len(cmu.train) / total < 0.92
    assert 0.04 < len(cmu.valid) / total < 0.06 and 0.04 < len(cmu.test) / total < 0.06
    words = [{w for w, _ in split} for split in (cmu.train, cmu.valid, cmu.test)]
    assert not (words[0] & words[1] or words[0] & words[2] or words[1] & words[2])
    for name, split in zip(("train", "valid", "test"), (cmu.train, cmu.valid, cmu.test)):
        for word, _ in split[:200]:
            assert corpora.cmudict_split(word) == name


def test_cmudict_is_deterministic(cmu):
    # the split is a pure function of the word (crc32), independent of process/seed
    import zlib
    assert corpora.cmudict_split("hello") == (
        "train" if zlib.crc32(b"hello") % 100 < 90 else
        "valid" if zlib.crc32(b"hello") % 100 < 95 else "test")
    again = corpora.cmudict_corpus(DataConfig(corpus="cmudict", seed=99))
    assert again[1] == cmu.valid and again[2] == cmu.test


# --- numbers -------------------------------------------------------------------

def test_numbers_corpus():
    cfg = DataConfig(corpus="numbers-es", toy_size=300, seed=5)
    splits = corpora.load_splits(cfg)
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (300, 500, 500)
    numbers = corpora._distinct_numbers(random.Random(5), 1300)
    assert splits.valid[0] == (num2words(numbers[0]), num2words(numbers[0], lang="es"))
    assert splits.train[-1] == (num2words(numbers[-1]), num2words(numbers[-1], lang="es"))
    sources = [set(s for s, _ in split) for split in (splits.train, splits.valid, splits.test)]
    assert sum(map(len, sources)) == 1300  # all distinct, so splits are disjoint
    assert corpora.load_splits(cfg).train == splits.train
    assert corpora.load_splits(DataConfig(corpus="numbers-es", toy_size=300, seed=6)).train != splits.train
    digits = {len(str(k)) for k in numbers}
    assert digits == {1, 2, 3, 4, 5, 6}  # log-uniform covers every magnitude


def test_numbers_unknown_language():
    with pytest.raises(DataError, match="unknown numbers language 'xx'"):
        corpora.load_splits(DataConfig(corpus="numbers-xx"))


# --- toy tasks -----------------------------------------------------------------

@pytest.mark.parametrize("task", ["copy", "reverse", "sort"])
def test_toy_tasks(task):
    cfg = DataConfig(corpus=task, toy_size=200, toy_vocab=12, toy_len=[2, 6], seed=7)
    splits = corpora.load_splits(cfg)
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (200, 500, 500)
    symbols = corpora.toy_symbols(12)
    for src, tgt in splits.train + splits.valid:
        toks = src.split()
        assert 2 <= len(toks) <= 6 and set(toks) <= set(symbols)
        expected = {"copy": toks, "reverse": toks[::-1],
                    "sort": sorted(toks, key=symbols.index)}[task]
        assert tgt.split() == expected
    held = set(splits.valid) | set(splits.test)
    assert len(held) == 1000 and not held & set(splits.train)
    assert corpora.load_splits(cfg).train == splits.train


def test_toy_sort_by_rank_not_string():
    syms = corpora.toy_symbols(70)
    assert syms[:3] == ["0", "1", "2"] and syms[10] == "a" and syms[62] == "w62"
    splits = corpora.load_splits(DataConfig(corpus="sort", toy_size=50, toy_vocab=70))
    for src, tgt in splits.train:
        assert [syms.index(t) for t in tgt.split()] == sorted(syms.index(t) for t in src.split())


def test_toy_bad_lengths():
    with pytest.raises(ConfigError, match="data.toy_len"):  # refused when the config is read
        from_dict({"data": {"corpus": "copy", "toy_len": [5, 2]}})


# --- multi30k ------------------------------------------------------------------

@pytest.mark.skipif(not MULTI30K.is_dir(), reason="needs ../shared/data/multi30k")
def test_multi30k_local_folder():
    cfg = DataConfig(corpus="multi30k", path=str(MULTI30K), src_lang="de", tgt_lang="en")
    splits = corpora.load_splits(cfg)
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (29000, 1014, 1000)
    assert splits.train[0][1].startswith("Two young, White males")


def _fake_remote(folder: Path, langs=("xx", "yy")) -> dict[str, str]:
    """A folder laid out like data/task1/raw, with sha256 of each file."""
    folder.mkdir()
    sums = {}
    for stem in corpora.MULTI30K_STEMS.values():
        for lang in langs:
            f = write(folder / f"{stem}.{lang}.gz", f"{stem} {lang} 1\n{stem} {lang} 2\n")
            sums[f.name] = hashlib.sha256(f.read_bytes()).hexdigest()
    return sums


def test_fetch_multi30k_file_url_and_checksums(tmp_path):
    remote = tmp_path / "remote"
    sums = _fake_remote(remote)
    dest = corpora.fetch_multi30k(["xx", "yy"], tmp_path / "cache", remote.as_uri(), sums)
    assert (dest / "val.yy.gz").read_bytes() == (remote / "val.yy.gz").read_bytes()
    cfg = DataConfig(corpus="multi30k", path=str(dest), src_lang="xx", tgt_lang="yy")
    splits = corpora.load_splits(cfg)
    assert splits.test == [("test_2016_flickr xx 1", "test_2016_flickr yy 1"),
                           ("test_2016_flickr xx 2", "test_2016_flickr yy 2")]
    bad = dict(sums, **{"train.xx.gz": "0" * 64})
    with pytest.raises(DataError, match="checksum mismatch .*train.xx.gz: expected sha256 0000"):
        corpora.fetch_multi30k(["xx"], tmp_path / "cache2", str(remote), bad)
    assert not (tmp_path / "cache2" / "train.xx.gz").exists()
    assert not list((tmp_path / "cache2").glob("*.part"))


def test_multi30k_download_cache(tmp_path, monkeypatch):
    remote = tmp_path / "remote"
    sums = _fake_remote(remote)
    monkeypatch.setattr(corpora, "MULTI30K_URL", remote.as_uri())
    monkeypatch.setattr(corpora, "MULTI30K_SHA256", sums)
    monkeypatch.setenv("TRANSDUCE_CACHE", str(tmp_path / "cache"))
    splits = corpora.load_splits(DataConfig(corpus="multi30k", src_lang="xx", tgt_lang="yy"))
    assert splits.valid[1] == ("val xx 2", "val yy 2")
    assert (tmp_path / "cache" / "multi30k" / "train.yy.gz").is_file()


def test_download_missing_url(tmp_path):
    with pytest.raises(DataError, match="cannot download file://"):
        corpora.download((tmp_path / "none.gz").as_uri(), tmp_path / "out.gz", None)


def test_cmudict_word_filter_and_builtin_names():
    ok = corpora._CMU_WORD.match
    assert ok("hello") and ok("'bout") and ok("a.m.") and ok("x-ray")
    assert not ok("abc1") and not ok("'") and not ok("Hello") and not ok("")
    assert corpora.builtin_name("numbers-fr") == "numbers"
    assert corpora.builtin_name("reverse") == "reverse"
    assert corpora.builtin_name("data.tsv") is None and corpora.builtin_name(None) is None
