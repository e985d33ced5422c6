"""Property-based fuzz of ``Translator.translate``: any Unicode (NUL, lone surrogates,
right-to-left text, combining marks, very long lines) gives no exception, one result per
input, in input order; bad argument types are a TypeError naming the argument.

(The server's fuzz and burst tests belong to the server's suite, issue 13.)
"""

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import tiny_config_dict
from transduce import cli
from transduce.translator import Translator

TOKENIZERS = ["whitespace", "char", "bpe"]
SPECIAL = "\x00\u200f\u202e\u05d0\u05d1 \u0627\u0644\u0639\u0631\u0628\u064a\u0629 \u0301\ufeff\U0001f600\ud800\udfff\r\t\x0b\u2028"


@pytest.fixture(scope="module", params=TOKENIZERS)
def translator(request, tmp_path_factory) -> Translator:
    """A tiny model trained 4 steps with the ``param`` tokenizer on both sides (``.kind``)."""
    base = tmp_path_factory.mktemp(request.param)
    cfg = tiny_config_dict(tokenizer={"src": request.param, "tgt": request.param, "vocab_size": 12},
                           train={"max_steps": 4, "valid_every": 4})
    (base / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    assert cli.main(["train", str(base / "tiny.yaml"), "--out", str(base / "run")]) == 0
    translator = Translator.from_dir(base / "run")
    translator.kind = request.param
    return translator


def lines() -> st.SearchStrategy[str]:
    """Any Unicode (lone surrogates included), special characters, long lines."""
    return st.one_of(st.text(st.characters(exclude_categories=()), max_size=40),
                     st.text(st.sampled_from(SPECIAL + "ab "), max_size=60),
                     st.text(st.sampled_from("a b c d"), min_size=500, max_size=2000))


@settings(max_examples=60, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data(), beam=st.sampled_from([1, 3]))
def test_any_unicode_gives_one_result_per_input_in_order(translator, data, beam):
    texts = data.draw(st.lists(lines(), max_size=6))
    results = translator.translate(texts, beam=beam, nbest=min(beam, 2))
    assert len(results) == len(texts)
    assert [r.source for r in results] == texts
    assert all(isinstance(r.text, str) for r in results)


@pytest.mark.parametrize("bad", ["a string", None, 5, b"bytes", ["ok", None], [b"x"]])
def test_bad_argument_types_are_a_type_error(translator, bad):
    with pytest.raises(TypeError, match="texts"):
        translator.translate(bad)


def test_lone_surrogates_with_sentencepiece(translator):  # sentencepiece raised TypeError on them
    assert [r.source for r in translator.translate(["a \ud800 b", "\udfff"])] == ["a \ud800 b", "\udfff"]
