"""bench/bench_inference.py in smoke mode on a tiny toy model (a few seconds)."""

import pytest

from conftest import load_bench_script
from transduce import corpora
from transduce.cli import main as cli_main
from transduce.config import load as load_config
from transduce.device import cpu_has_fast_bf16


def load_bench():
    return load_bench_script("bench_inference")


@pytest.fixture(scope="module")
def bench():
    return load_bench()


@pytest.fixture(scope="module")
def toy(tmp_path_factory, toy_overrides):
    """A toy model folder and 20 test pairs of its task as source/reference files."""
    root = tmp_path_factory.mktemp("bench_inference")
    assert cli_main(["train", "toy", "--out", str(root / "model")] + list(toy_overrides)) == 0
    pairs = corpora.load_splits(load_config(None, ["data.corpus=reverse"]).data).test[:20]
    (root / "src.txt").write_text("".join(s + "\n" for s, _ in pairs), encoding="utf-8")
    (root / "ref.txt").write_text("".join(t + "\n" for _, t in pairs), encoding="utf-8")
    return root


def smoke_args(toy, *extra):
    return ["--model", str(toy / "model"), "--source", str(toy / "src.txt"),
            "--reference", str(toy / "ref.txt"), "--smoke", *extra]


def table_rows(text):
    """Markdown table body rows -> lists of cells."""
    lines = [l for l in text.splitlines() if l.startswith("| ") and "precision" not in l]
    return [[c.strip() for c in l.strip("|").split("|")] for l in lines]


def test_smoke_table_covers_every_variant(bench, toy, capsys):
    text = bench.run(smoke_args(toy))
    rows = table_rows(text)
    keys = [tuple(r[:3]) for r in rows]
    assert keys == [(p, m, mode) for p in ("fp32", "bf16", "int8") for m in ("greedy", "beam5")
                    for mode in ("batched", "one-by-one")]
    by_key = {tuple(r[:3]): r for r in rows}
    # smoke: 12 sentences batched, 3 one by one; bf16 cut to 4 when it is emulated
    assert by_key["fp32", "greedy", "batched"][3] == "12"
    assert by_key["fp32", "beam5", "one-by-one"][3] == "3"
    assert by_key["bf16", "greedy", "batched"][3] == ("12" if cpu_has_fast_bf16() else "4*")
    assert by_key["fp32", "greedy", "batched"][6] == "1.00x"
    for row in rows:
        assert float(row[4]) > 0 and float(row[5]) > 0
    # one sentence at a time gives exactly the batched fp32 outputs
    assert by_key["fp32", "greedy", "one-by-one"][8] == "100.0%"
    assert by_key["fp32", "beam5", "one-by-one"][8] == "100.0%"
    out = capsys.readouterr().out
    assert "precision" in out and "int8" in out


def test_tokens_and_bleu_match_the_outputs(bench, toy):
    """Variant token counts are the output pieces; BLEU is sacreBLEU on the outputs."""
    from transduce import metrics

    args = bench.parse_args(smoke_args(toy, "--precisions", "fp32", "--methods", "greedy"))
    loaded = bench.load_model(args.model)
    sources, refs = bench.read_data(args, loaded.config)
    assert len(sources) == 12 and len(refs) == 12
    translators = bench.make_translators(loaded, args, bench.resolve_device("cpu"))
    variants = bench.make_variants(translators, sources, args, bench.resolve_device("cpu"))
    bench.measure(translators, variants, repeats=2)
    batched = variants[0]
    expected = translators["fp32"].translate(sources, method="greedy")
    assert batched.outputs == [t.text for t in expected]
    assert batched.tokens == sum(len(t.tokens) for t in expected) > 0
    assert len(batched.seconds) == 2
    assert batched.sent_per_s() == pytest.approx(12 / (sum(batched.seconds) / 2))  # median of 2
    row = bench.rows(variants, refs)[0]
    assert float(row[7]) == pytest.approx(metrics.bleu(batched.outputs, refs).value, abs=0.005)


def test_write_replaces_only_its_section(bench, toy, tmp_path):
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\n## Data\nkeep me\n\n"
                       f"{bench.HEADING}\nold figures\n\n## Models\nkeep too\n", encoding="utf-8")
    bench.run(smoke_args(toy, "--precisions", "fp32", "--methods", "greedy", "--write",
                         "--results", str(results), "--trained-by", "transduce train toy"))
    text = results.read_text(encoding="utf-8")
    assert "old figures" not in text
    assert f"`{toy / 'model'}` trained by `transduce train toy`." in text
    assert "--trained-by" not in text
    assert text.count(bench.HEADING) == 1
    assert text.index("## Data\nkeep me") < text.index(bench.HEADING) < text.index("## Models\nkeep too")
    assert "Command: `python3 bench/bench_inference.py --model" in text
    assert "torch " in text and "Date: " in text
    assert len(table_rows(text)) == 2  # fp32 greedy batched + one-by-one


@pytest.mark.parametrize("extra, message", [
    (["--methods", "beam7"], "--methods: beam7"),
    (["--precisions", "fp64"], "--precisions: fp64"),
    (["--source", "/nonexistent/src.txt"], "file not found: /nonexistent/src.txt"),
])
def test_bad_arguments_exit_2(bench, toy, capsys, extra, message):
    assert bench.main(smoke_args(toy, *extra)) == 2
    assert message in capsys.readouterr().err
