"""sizing.py: tokenizers and steps chosen from the data."""
from transduce import config, sizing
from transduce.config import RECIPES


def _profile(pairs):
    return sizing.profile(pairs)


def test_words_to_phonemes_are_chars_to_whitespace_tokens():
    data = _profile([("hello", "HH AH0 L OW1"), ("world", "W ER1 L D"), ("", "skipped")] * 100)
    assert data.pairs == 200
    out = sizing.sized_overrides(data, "small")
    assert out[:2] == ["tokenizer.src=char", "tokenizer.tgt=whitespace"]
    assert "train.early_stop_metric=exact_match" in out
    assert "train.max_steps=500" in out  # the floor: 200 pairs x 5 tokens x 20 epochs / 2000 is less


def test_sentences_share_a_bpe_model_sized_by_the_corpus():
    words = [f"w{i}" for i in range(3000)]
    pairs = [(" ".join(words[i:i + 10]), " ".join(words[i + 1:i + 12])) for i in range(2900)] * 20
    out = sizing.sized_overrides(_profile(pairs), "base")
    assert out[:4] == ["tokenizer.src=bpe", "tokenizer.tgt=bpe", "tokenizer.joint=true",
                       "tokenizer.vocab_size=14500"]  # 58,000 pairs / 4, rounded to 500
    steps = int(next(o for o in out if o.startswith("train.max_steps=")).split("=")[1])
    # 30 epochs x 58,000 pairs x (11 words x 1.3 + EOS) / 4,000 tokens per batch
    assert steps == round(30 * 58000 * (11 * 1.3 + 1) / 4000 / 100) * 100
    assert "train.early_stop_metric=bleu" in out


def test_sized_overrides_load_on_both_recipes():
    data = _profile([("abc", "x y z")] * 50)
    for recipe in ("small", "base"):
        cfg = config.load(RECIPES / f"{recipe}.yaml", sizing.sized_overrides(data, recipe)
                          + ['data.train=["x.tsv"]'])
        assert cfg.data.corpus is None and cfg.train.valid_every <= cfg.train.max_steps
