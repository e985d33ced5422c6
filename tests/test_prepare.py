"""Tests for transduce.prepare: corpus statistics, drops, bad input."""
from __future__ import annotations

import gzip

import pytest

from transduce.errors import DataError
from transduce.prepare import format_report, prepare

TSV = "Go.\tVe.\tattribution\nHi there.\tHola.\n\t\nWait here now!\tEspera aquí.\n"


def test_report_numbers(tmp_path):
    f = tmp_path / "a.tsv"
    f.write_text(TSV, encoding="utf-8")
    r = prepare(str(f), max_len=10)
    assert (r.lines, r.pairs, r.empty) == (4, 3, 1)
    assert r.too_long_tokens == 0 and r.too_long_chars == 1  # "Wait here now!" (14 chars)
    assert (r.src.chars_min, r.src.chars_max, r.src.chars_sum) == (3, 14, 26)
    assert (r.src.tokens_min, r.src.tokens_max, r.src.tokens_sum) == (1, 3, 6)
    assert (r.tgt.tokens_min, r.tgt.tokens_max) == (1, 2)
    assert len(r.src.token_types) == 6 and len(r.tgt.token_types) == 4
    assert r.samples[0] == ("Go.", "Ve.") and len(r.samples) == 3
    assert r.drops == [(3, "empty source"), (4, "too long: 14 characters > 10")]
    text = format_report(r)
    assert "pairs: 3" in text and "empty pairs (dropped): 1" in text
    assert "source: chars min/mean/max 3/8.7/14, tokens min/mean/max 1/2.0/3" in text
    assert "line 3: empty source" in text and "Go.\t->\tVe." in text


def test_report_token_limit(tmp_path):
    f = tmp_path / "a.tsv"
    f.write_text("a b c d\tx\nb\ty\n", encoding="utf-8")
    r = prepare(str(f), max_len=3)
    assert r.too_long_tokens == 1 and r.drops[0] == (1, "too long: 4 whitespace tokens > 3, "
                                                        "7 characters > 3")


def test_parallel_gz(tmp_path):
    s, t = tmp_path / "s.gz", tmp_path / "t.gz"
    s.write_bytes(gzip.compress("ein Hund\nzwei\n".encode()))
    t.write_bytes(gzip.compress("a dog\ntwo\n".encode()))
    r = prepare(str(s), str(t))
    assert r.pairs == 2 and r.samples == [("ein Hund", "a dog"), ("zwei", "two")]
    assert format_report(r).startswith(f"corpus: {s} + {t}")


def test_builtin_corpus():
    r = prepare("reverse")
    assert r.splits == {"train": 5000, "valid": 500, "test": 500}
    assert r.pairs == 5000 and r.src.tokens_min == 3 and r.src.tokens_max == 10
    src, tgt = r.samples[0]
    assert tgt.split() == src.split()[::-1]
    assert "built-in splits: train 5000, valid 500, test 500" in format_report(r)


def test_bad_inputs(tmp_path):
    with pytest.raises(DataError, match="not found: .*missing.tsv"):
        prepare(str(tmp_path / "missing.tsv"))
    (tmp_path / "notab.tsv").write_text("a\tb\nno tab\n")
    with pytest.raises(DataError, match=r"notab.tsv:2: no tab"):
        prepare(str(tmp_path / "notab.tsv"))
    (tmp_path / "s").write_text("a\nb\n")
    (tmp_path / "t").write_text("a\n")
    with pytest.raises(DataError, match=r"s has 2 lines but .*t has 1"):
        prepare(str(tmp_path / "s"), str(tmp_path / "t"))
    (tmp_path / "u.tsv").write_bytes(b"a\tb\n\xc3\x28\tx\n")
    with pytest.raises(DataError, match=r"u.tsv:2: invalid UTF-8"):
        prepare(str(tmp_path / "u.tsv"))
    (tmp_path / "e.tsv").write_text("\n \t \n")
    with pytest.raises(DataError, match=r"e.tsv has no pairs \(2 lines, 2 of them empty\)"):
        prepare(str(tmp_path / "e.tsv"))


def test_tsv_lines_with_extra_columns_are_flagged(tmp_path):
    path = tmp_path / "c.tsv"
    path.write_text("a b\tx y\nc\td\tCC-BY Tom\ne\tf\n", encoding="utf-8")
    report = prepare(str(path))
    assert report.pairs == 3 and report.extra_columns == [2]
    assert "more than two tab-separated columns" in format_report(report)
    assert "first: line 2" in format_report(report)


def test_reading_a_tsv_with_extra_columns_warns_once(tmp_path):
    import warnings

    from transduce import corpora

    path = tmp_path / "c.tsv"
    path.write_text("a\tb\tc\nd\te\n", encoding="utf-8")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert list(corpora.read_tsv(path)) == [("a", "b"), ("d", "e")]
    assert [str(w.message) for w in caught] == [
        f"{path}: 1 line(s) have more than two tab-separated columns (first: line 1); "
        "only the first two are read"]
