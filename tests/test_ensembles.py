import io
import json
import math
import shutil
import sys

import pytest
import torch
from conftest import tiny_config_dict

import transduce
from transduce.checkpoint import load_model, write_ensemble
from transduce.cli import main
from transduce.config import from_dict
from transduce.ensembles import Ensemble
from transduce.errors import CheckpointError
from transduce.train import train
from transduce.translator import Translator
from transduce.vocab import BOS, EOS

SOURCES = ["1 2 3", "4 5", "2 2 1 3", "5"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two tiny models of the reverse task on the same data: a GRU with general attention
    and an LSTM with additive (Bahdanau) attention, different seeds."""
    root = tmp_path_factory.mktemp("ens")
    a = root / "a"
    train(from_dict(tiny_config_dict(train={"seed": 1, "max_steps": 40})), a)
    b = root / "b"
    train(from_dict(tiny_config_dict(model={"family": "bahdanau", "cell": "lstm"},
                                     train={"seed": 2, "max_steps": 40})), b)
    return root, a, b


def test_step_is_the_log_of_the_members_mean_probability(runs):
    _, a, b = runs
    ma, mb = load_model(a).model, load_model(b).model
    ens = Ensemble([ma, mb]).eval()
    src = torch.tensor([[3, 4, 5], [6, 7, 0]])
    lengths = torch.tensor([3, 2])
    tokens = torch.tensor([1, 1])
    with torch.no_grad():
        enc = ens.encode(src, lengths)
        out = ens.step(tokens, ens.init_state(enc), enc)
        pa = ma.step(tokens, ma.init_state(ma.encode(src, lengths)), ma.encode(src, lengths))
        pb = mb.step(tokens, mb.init_state(mb.encode(src, lengths)), mb.encode(src, lengths))
    mean = (pa.logits.softmax(-1) + pb.logits.softmax(-1)) / 2
    assert torch.allclose(out.logits, mean.log(), atol=1e-6)
    assert torch.allclose(out.logits.exp().sum(-1), torch.ones(2), atol=1e-6)
    assert torch.allclose(out.attention, (pa.attention + pb.attention) / 2, atol=1e-6)
    assert ens.num_parameters() == ma.num_parameters() + mb.num_parameters()
    assert ens.describe().startswith("ensemble of 2: (1) luong gru") and "(2) bahdanau lstm" in ens.describe()


def test_an_ensemble_of_one_model_twice_translates_as_the_model(runs, tmp_path):
    _, a, _ = runs
    ens = transduce.ensemble([a, a], tmp_path / "twice")
    single, double = transduce.load(a), transduce.load(ens)
    for opts in ({"beam": 3, "nbest": 3}, {"method": "greedy"}):
        one, two = single.translate(SOURCES, **opts), double.translate(SOURCES, **opts)
        assert [t.text for t in one] == [t.text for t in two]
        assert [[h for h, _ in t.nbest] for t in one] == [[h for h, _ in t.nbest] for t in two]
        assert [s for t in one for _, s in t.nbest] == pytest.approx([s for t in two for _, s in t.nbest], abs=1e-5)
        assert [t.score for t in one] == pytest.approx([t.score for t in two], abs=1e-5)


def test_scores_are_the_log_mean_probability_of_each_token(runs, tmp_path):
    _, a, b = runs
    ens = Translator.from_dir(write_ensemble([a, b], tmp_path / "ab"))
    ta, tb = Translator.from_dir(a), Translator.from_dir(b)
    targets = ["3 2 1", "5 4", "3 1 2 2", "5"]
    got = ens.score(SOURCES, targets)
    for (lp, n), src, tgt in zip(got, SOURCES, targets):
        assert n == len(tgt.split()) + 1
        # per token: log((pa + pb) / 2), from each model's own per-token log-probs
        ids = ta.tgt_codec.encode(tgt)
        src_ids = torch.tensor([ta.tokenize([src])[0].ids])
        tgt_in = torch.tensor([[BOS] + ids])
        with torch.no_grad():
            la = ta.model(src_ids, torch.tensor([src_ids.size(1)]), tgt_in).logits.log_softmax(-1)[0]
            lb = tb.model(src_ids, torch.tensor([src_ids.size(1)]), tgt_in).logits.log_softmax(-1)[0]
        gold = torch.tensor(ids + [EOS])
        want = sum(math.log((math.exp(la[t, g]) + math.exp(lb[t, g])) / 2) for t, g in enumerate(gold.tolist()))
        assert lp == pytest.approx(want, abs=1e-4)


@pytest.mark.parametrize("which", ["a", "ab"])
def test_scoring_encodes_each_repeated_source_once_and_scores_as_pair_by_pair(runs, tmp_path, which):
    _, a, b = runs
    t = Translator.from_dir(a if which == "a" else write_ensemble([a, b], tmp_path / "ab"))
    sources = ["1 2 3", "1 2 3", "1 2 3", "4 5", "2 2 1 3", "4 5", "5", "2 2 1 3", "1 2 3"]
    targets = ["3 2 1", "3 2", "1", "5 4", "3 1 2 2", "4", "5", "3 1 2", "3 3 2 1"]
    alone = [t.score([s], [x])[0] for s, x in zip(sources, targets)]
    rows = []
    encode = t.model.encode
    t.model.encode = lambda src, lengths: rows.append(src.size(0)) or encode(src, lengths)
    got = t.score(sources, targets)
    assert sum(rows) == len(set(sources)) == 4
    assert [n for _, n in got] == [n for _, n in alone] == [len(x.split()) + 1 for x in targets]
    assert [lp for lp, _ in got] == pytest.approx([lp for lp, _ in alone], abs=1e-5)


def test_cli_writes_translates_evaluates_and_explains_its_errors(runs, tmp_path, capsys, monkeypatch):
    root, a, b = runs
    out = tmp_path / "ens"
    assert main(["ensemble", str(a), str(b), "--out", str(out)]) == 0
    assert "ensemble of 2 models" in capsys.readouterr().out
    manifest = json.loads((out / "ensemble.json").read_text())
    assert manifest["members"] == ["member-1", "member-2"]
    assert (out / "member-2" / "model.safetensors").is_file() and not (out / "member-1" / "log.jsonl").exists()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"1 2 3\n4 5\n"), encoding="utf-8"))
    assert main(["translate", str(out), "--beam", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [t.text for t in transduce.load(out).translate(["1 2 3", "4 5"], beam=2)]
    assert main(["evaluate", str(out), "--split", "valid", "--metrics", "exact_match,ppl", "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert 0 <= scores["exact_match"] <= 100 and scores["ppl"] > 1

    # user errors: one line, exit 2, the culprit named
    other = root / "other-vocab"
    if not other.exists():
        train(from_dict(tiny_config_dict(data={"toy_vocab": 5}, train={"max_steps": 2})), other)
    cases = [
        (["ensemble", str(a), "--out", str(tmp_path / "x")], "at least 2 model folders"),
        (["ensemble", str(a), str(other), "--out", str(tmp_path / "x")], "src.vocab.json differs from"),
        (["ensemble", str(out), str(a), "--out", str(tmp_path / "x")], "is an ensemble folder"),
        (["ensemble", str(a), str(tmp_path / "nothing"), "--out", str(tmp_path / "x")], "not found"),
        (["ensemble", str(a), str(b), "--out", str(a)], "holds a model already"),
        (["average", str(out), str(a), "--out", str(tmp_path / "x")], "cannot be averaged"),
        (["train", "toy", "--init-from", str(out), "--out", str(tmp_path / "ft")], "fine-tune one of its members"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (argv, err)
    assert not (tmp_path / "x").exists() and not (a / "ensemble.json").exists()


def test_fine_tuning_from_the_python_api_refuses_an_ensemble(runs, tmp_path):
    _, a, b = runs
    out = write_ensemble([a, b], tmp_path / "ens")
    with pytest.raises(CheckpointError, match="is an ensemble folder: fine-tune one of its members"):
        train(from_dict(tiny_config_dict()), tmp_path / "ft", init_from=out)
    assert not (tmp_path / "ft" / "model.safetensors").exists()


def test_broken_ensemble_folders_are_refused_by_name(runs, tmp_path):
    _, a, b = runs
    out = write_ensemble([a, b], tmp_path / "ens")
    manifest = out / "ensemble.json"
    good = manifest.read_text()
    manifest.write_text("{not json")
    with pytest.raises(CheckpointError, match="ensemble.json: invalid JSON"):
        load_model(out)
    manifest.write_text(json.dumps({**json.loads(good), "members": ["member-1", "../b"]}))
    with pytest.raises(CheckpointError, match="'members' must name at least 2 folders"):
        load_model(out)
    manifest.write_text(good)
    shutil.copy(a / "src.vocab.json", out / "member-2" / "src.vocab.json")
    (out / "member-2" / "src.vocab.json").write_text('["<pad>", "<unk>", "<s>", "</s>", "9"]')
    with pytest.raises(CheckpointError, match="member-2"):
        load_model(out)


def test_server_lists_an_ensemble_and_translates_with_it(runs, tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from transduce.serve.app import create_app

    _, a, b = runs
    ens = Translator.from_dir(write_ensemble([a, b], tmp_path / "ens"))
    with TestClient(create_app({"ens": ens, "a": Translator.from_dir(a)})) as client:
        models = {m["name"]: m for m in client.get("/api/models").json()}
        assert models["ens"]["ensemble"] == 2 and models["a"]["ensemble"] == 1
        assert models["ens"]["parameters"] == ens.model.num_parameters()
        res = client.post("/api/translate", json={"model": "ens", "texts": SOURCES, "beam": 2})
        assert res.status_code == 200, res.text
        got = [t["text"] for t in res.json()["translations"]]
    assert got == [t.text for t in ens.translate(SOURCES, beam=2)]


# --- right-to-left models and rescoring ---------------------------------------------

@pytest.fixture(scope="module")
def r2l(tmp_path_factory):
    """A tiny model of the same data trained with tokenizer.reverse_target: it writes the
    output right to left."""
    out = tmp_path_factory.mktemp("r2l") / "r2l"
    train(from_dict(tiny_config_dict(tokenizer={"reverse_target": True}, train={"seed": 3, "max_steps": 40})), out)
    return out


def test_a_right_to_left_model_reads_and_writes_its_targets_reversed(r2l):
    t = transduce.load(r2l)
    assert t.tgt_codec.encode("1 2 3") == t.tgt_codec.vocab.encode(["3", "2", "1"])
    got = t.translate(SOURCES, beam=3, length_penalty="none", min_len=2)
    assert max(len(tr.tokens) for tr in got) > 1
    for tr in got:
        assert tr.text == " ".join(reversed(tr.tokens))  # tokens in the order the model wrote them
        # teacher forcing reverses the text the same way: it gives the beam's log-probability
        (logprob, n), = t.score([tr.source], [tr.text])
        assert logprob == pytest.approx(tr.score, abs=1e-4) and n == len(tr.tokens) + 1


@pytest.mark.parametrize("penalty", ["none", "gnmt"])
def test_rescoring_reranks_the_beam_by_score_plus_weight_times_the_rescorers_log_probability(
        runs, r2l, tmp_path, penalty):
    _, a, _ = runs
    folder = transduce.ensemble([a], tmp_path / "a+r2l", rescore=[r2l])
    both, alone, rescorer = transduce.load(folder), transduce.load(a), transduce.load(r2l)
    assert not isinstance(both.model, Ensemble) and len(both.rescorers) == 1
    beams = alone.translate(SOURCES, beam=4, nbest=4, length_penalty=penalty, alpha=0.6)
    for weight in (0.5, 2.0):
        got = both.translate(SOURCES, beam=4, nbest=4, length_penalty=penalty, alpha=0.6, rescore_weight=weight)
        best = both.translate(SOURCES, beam=4, length_penalty=penalty, alpha=0.6, rescore_weight=weight)
        for src, beam, tr, one in zip(SOURCES, beams, got, best):
            extra = rescorer.score([src] * len(beam.nbest), [h for h, _ in beam.nbest])
            want = [(h, s + weight * lp / (((5 + n) / 6) ** 0.6 if penalty == "gnmt" else 1))
                    for (h, s), (lp, n) in zip(beam.nbest, extra)]
            want.sort(key=lambda x: -x[1])
            assert [h for h, _ in tr.nbest] == [h for h, _ in want]
            assert [s for _, s in tr.nbest] == pytest.approx([s for _, s in want], abs=1e-4)
            assert (one.text, one.score) == (tr.text, pytest.approx(tr.score, abs=1e-6))
            assert len(one.nbest) == 1
    # weight 0, greedy decoding: the model's own output
    for opts in ({"beam": 4, "nbest": 2, "rescore_weight": 0.0}, {"method": "greedy"}):
        assert [(t.text, t.score) for t in both.translate(SOURCES, **opts)] == \
            [(t.text, t.score) for t in alone.translate(SOURCES, **opts)]


def test_rescorer_folders_from_the_cli_and_the_server(runs, r2l, tmp_path, capsys):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from transduce.serve.app import create_app

    _, a, b = runs
    out = tmp_path / "ens"
    assert main(["ensemble", str(a), str(b), "--rescore", str(r2l), "--out", str(out)]) == 0
    assert f"re-ranked by {r2l}" in capsys.readouterr().out
    manifest = json.loads((out / "ensemble.json").read_text())
    assert manifest["members"] == ["member-1", "member-2"] and manifest["rescorers"] == ["rescorer-1"]
    t = transduce.load(out)
    assert isinstance(t.model, Ensemble) and len(t.rescorers) == 1
    with TestClient(create_app({"ens": t})) as client:
        listed = client.get("/api/models").json()[0]
        assert listed["rescorers"] == 1 and listed["search"]["rescore_weight"] == 1.0
        res = client.post("/api/translate", json={"texts": SOURCES, "beam": 3, "rescore_weight": 0.7})
        assert res.status_code == 200, res.text
        assert [x["text"] for x in res.json()["translations"]] == \
            [x.text for x in t.translate(SOURCES, beam=3, rescore_weight=0.7)]
        bad = client.post("/api/translate", json={"texts": SOURCES, "rescore_weight": -1})
        assert bad.status_code == 422 and "rescore_weight" in bad.text
    manifest["rescorers"] = ["../r2l"]
    (out / "ensemble.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="'rescorers' must name folders inside"):
        load_model(out)
    for argv, message in [
        (["ensemble", str(a), "--rescore", str(out), "--out", str(tmp_path / "x")], "is an ensemble folder"),
        (["ensemble", str(a), "--rescore", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")], "not found"),
        (["translate", str(a), "--rescore-weight", "-1"], "--rescore-weight: must be in [0, 100]"),
    ]:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (argv, err)
