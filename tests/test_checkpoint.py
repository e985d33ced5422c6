"""Model folders and training state: safetensors/JSON round trips, atomic writes, clear errors."""
import errno
import json
import random

import numpy as np
import pytest
import torch

from transduce import checkpoint as ck
from transduce.config import from_dict
from transduce.errors import CheckpointError
from transduce.model import Seq2Seq
from transduce.vocab import BOS, PAD, build_codecs

PAIRS = [("a b c", "c b a"), ("b c", "c b"), ("c a a b", "b a a c")]


def _setup(seed=0, **model):
    opts = dict(family="luong", cell="lstm", emb_dim=8, hidden=8, enc_layers=1, dec_layers=1,
                dropout=0.0, emb_dropout=0.0, share_embeddings=True, tie_embeddings=True)
    opts.update(model)
    cfg = from_dict({"data": {"corpus": "reverse"}, "model": opts,
                     "tokenizer": {"src": "whitespace", "tgt": "whitespace", "joint": True}})
    src, tgt = build_codecs(cfg.tokenizer, PAIRS)
    torch.manual_seed(seed)
    return Seq2Seq.from_config(cfg.model, len(src.vocab), len(tgt.vocab)), cfg, src, tgt


def _inputs():
    src = torch.tensor([[4, 5, 6], [5, 6, PAD]])
    return src, torch.tensor([3, 2]), torch.tensor([[BOS, 6, 5], [BOS, 6, PAD]])


def test_save_load_round_trip_with_shared_weights(tmp_path):
    model, cfg, src, tgt = _setup()
    ck.save_model(tmp_path / "m", model, cfg, src, tgt, {"step": 7, "metrics": {"loss": 1.5}})
    names = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert names == ["config.yaml", "meta.json", "model.safetensors", "src.tokenizer.json",
                     "src.vocab.json", "tgt.tokenizer.json", "tgt.vocab.json"]
    loaded = ck.load_model(tmp_path / "m")
    assert loaded.config == cfg and loaded.meta["step"] == 7
    assert loaded.meta["parameters"] == model.num_parameters()
    assert loaded.src_codec.encode("a b") == src.encode("a b")
    for (k, a), b in zip(model.state_dict().items(), loaded.model.state_dict().values()):
        assert torch.equal(a, b), k
    enc = loaded.model.encoder.embedding.weight
    assert enc.data_ptr() == loaded.model.decoder.embedding.weight.data_ptr()  # still shared
    with torch.no_grad():
        assert torch.equal(model.eval()(*_inputs()).logits, loaded.model(*_inputs()).logits)
    assert not list(tmp_path.glob(".*"))  # no temporary folders left


def test_rnn_weights_that_share_one_flat_buffer_are_each_stored(tmp_path):
    """On a GPU cuDNN keeps an RNN's weights as views into one flat buffer: every view is a
    weight of its own (saving once refused them), while tied weights stay stored once."""
    model, cfg, src, tgt = _setup(enc_layers=2, bidirectional=True)
    rnn = model.encoder.rnn
    params = [p for _, p in rnn.named_parameters()]
    flat = torch.cat([p.detach().flatten() for p in params])
    offset = 0
    for p in params:  # what flatten_parameters() does on a GPU
        p.data = flat[offset:offset + p.numel()].view_as(p)
        offset += p.numel()
    assert len({p.untyped_storage().data_ptr() for p in params}) == 1
    ck.save_model(tmp_path / "m", model, cfg, src, tgt)
    stored = ck.read_tensors(tmp_path / "m" / "model.safetensors")
    assert {f"encoder.rnn.{n}" for n, _ in rnn.named_parameters()} <= stored.keys()
    tied = {"encoder.embedding.weight", "decoder.embedding.weight", "decoder.out.weight"}
    assert len(tied & stored.keys()) == 1  # one tensor under three names
    loaded = ck.load_model(tmp_path / "m")
    for (k, a), b in zip(model.state_dict().items(), loaded.model.state_dict().values()):
        assert torch.equal(a, b), k


def test_truncated_weights_name_the_file_and_previous_still_loads(tmp_path):
    model, cfg, src, tgt = _setup()
    ck.save_model(tmp_path / "step-1", model, cfg, src, tgt, {"step": 1})
    ck.save_model(tmp_path / "step-2", model, cfg, src, tgt, {"step": 2})
    weights = tmp_path / "step-2" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"step-2/model\.safetensors.*(corrupt|truncated)"):
        ck.load_model(tmp_path / "step-2")
    assert ck.load_model(tmp_path / "step-1").meta["step"] == 1


def test_missing_file_and_bad_json_name_the_file(tmp_path):
    model, cfg, src, tgt = _setup()
    ck.save_model(tmp_path / "m", model, cfg, src, tgt)
    (tmp_path / "m" / "meta.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"m/meta\.json: invalid JSON"):
        ck.load_model(tmp_path / "m")
    (tmp_path / "m" / "meta.json").unlink()
    with pytest.raises(CheckpointError, match=r"m/meta\.json: file missing"):
        ck.load_model(tmp_path / "m")
    with pytest.raises(CheckpointError, match="model folder not found"):
        ck.load_model(tmp_path / "nothing")


def test_wrong_weights_are_a_checkpoint_error(tmp_path):
    model, cfg, src, tgt = _setup()
    ck.save_model(tmp_path / "m", model, cfg, src, tgt)
    other, *_ = _setup(hidden=16, emb_dim=16)
    with pytest.raises(CheckpointError, match="do not match"):
        ck.load_weights(other, tmp_path / "m" / "model.safetensors")


@pytest.mark.parametrize("target", ["new", "existing"])
def test_full_disk_is_clean(tmp_path, monkeypatch, target):
    model, cfg, src, tgt = _setup()
    ck.save_model(tmp_path / "existing", model, cfg, src, tgt, {"step": 1})
    before = (tmp_path / "existing" / "model.safetensors").read_bytes()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ck, "_save_module", full)
    with torch.no_grad():
        model.decoder.out_bias.add_(1.0)
    with pytest.raises(CheckpointError, match="disk full"):
        ck.save_model(tmp_path / target, model, cfg, src, tgt, {"step": 2})
    assert (tmp_path / "existing" / "model.safetensors").read_bytes() == before
    assert ck.load_model(tmp_path / "existing").meta["step"] == 1
    assert not (tmp_path / "new").exists()
    assert not list(tmp_path.glob(".*"))


def _adam_steps(model, opt, n):
    src, lengths, tgt = _inputs()
    for _ in range(n):
        opt.zero_grad()
        model(src, lengths, tgt).logits.square().mean().backward()
        opt.step()


def test_training_state_round_trip_resumes_bitwise(tmp_path):
    model, cfg, src, tgt = _setup()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.8, 0.9))
    _adam_steps(model, opt, 2)
    plain, tensors = ck.capture_rng()
    state = ck.TrainingState(opt.state_dict(), {"step": 2, "rng": plain}, tensors)
    ck.save_checkpoint(tmp_path / "c", model, cfg, src, tgt, {"step": 2}, state)
    assert sorted(p.name for p in (tmp_path / "c" / "trainer").iterdir()) == [
        "optimizer.safetensors", "rng.safetensors", "state.json"]
    _adam_steps(model, opt, 2)

    loaded = ck.load_model(tmp_path / "c").model.train()
    opt2 = torch.optim.AdamW(loaded.parameters(), lr=1.0)
    back = ck.load_training_state(tmp_path / "c")
    opt2.load_state_dict(back.optimizer)
    assert back.state["step"] == 2 and opt2.param_groups[0]["betas"] == (0.8, 0.9)
    _adam_steps(loaded, opt2, 2)
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)


def test_rng_capture_restore():
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    random.gauss(0, 1)  # leaves a cached gaussian in python's state
    plain, tensors = ck.capture_rng()
    plain = json.loads(json.dumps(plain))  # survives JSON
    first = (random.random(), random.gauss(0, 1), np.random.rand(), np.random.randn(), torch.rand(3))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    ck.restore_rng(plain, tensors)
    again = (random.random(), random.gauss(0, 1), np.random.rand(), np.random.randn(), torch.rand(3))
    assert first[:4] == again[:4] and torch.equal(first[4], again[4])


def test_corrupt_training_state_names_the_file(tmp_path):
    model, cfg, src, tgt = _setup()
    opt = torch.optim.Adam(model.parameters())
    _adam_steps(model, opt, 1)
    ck.save_checkpoint(tmp_path / "c", model, cfg, src, tgt, {}, ck.TrainingState(opt.state_dict()))
    path = tmp_path / "c" / "trainer" / "optimizer.safetensors"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"trainer/optimizer\.safetensors"):
        ck.load_training_state(tmp_path / "c")


def test_average_checkpoints(tmp_path):
    m1, cfg, src, tgt = _setup(seed=1)
    m2, *_ = _setup(seed=2)
    ck.save_model(tmp_path / "a", m1, cfg, src, tgt, {"step": 1})
    ck.save_model(tmp_path / "b", m2, cfg, src, tgt, {"step": 2})
    ck.average_checkpoints([tmp_path / "a", tmp_path / "b"], tmp_path / "avg")
    avg = ck.load_model(tmp_path / "avg")
    assert avg.meta["averaged_from"] == [str(tmp_path / "a"), str(tmp_path / "b")]
    for k, w in avg.model.state_dict().items():
        want = ((m1.state_dict()[k].double() + m2.state_dict()[k].double()) / 2).float()
        assert torch.equal(w, want), k


def test_existing_run_folder_keeps_other_content(tmp_path):
    model, cfg, src, tgt = _setup()
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "log.jsonl").write_text("{}\n")
    ck.save_model(run, model, cfg, src, tgt, {"step": 1})
    ck.save_model(run, model, cfg, src, tgt, {"step": 2})
    assert (run / "log.jsonl").read_text() == "{}\n" and (run / "checkpoints").is_dir()
    assert ck.load_model(run).meta["step"] == 2


def test_a_safetensors_full_disk_is_the_disk_full_checkpoint_error(tmp_path, monkeypatch):
    from safetensors import SafetensorError
    model, cfg, src, tgt = _setup()

    def full(*args, **kwargs):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(ck, "save_file", full)
    with pytest.raises(CheckpointError, match="m: disk full .* previous checkpoint was left intact"):
        ck.save_model(tmp_path / "m", model, cfg, src, tgt)
    assert list(tmp_path.iterdir()) == []


def test_non_finite_weights_are_refused_on_save_and_load(tmp_path):
    model, cfg, src, tgt = _setup()
    ck.save_model(tmp_path / "m", model, cfg, src, tgt)
    with torch.no_grad():
        model.encoder.embedding.weight[1, 0] = float("inf")
    with pytest.raises(ck.NonFiniteError, match=r"refusing to write non-finite .* \d+ of \d+ tensors \(encoder"):
        ck.save_model(tmp_path / "n", model, cfg, src, tgt)
    ck._save_module(model, tmp_path / "m" / "model.safetensors")  # as a foreign writer would
    with pytest.raises(ck.NonFiniteError, match=r"m/model\.safetensors: refusing to load non-finite"):
        ck.load_model(tmp_path / "m")


@pytest.mark.parametrize("value, schema, message", [
    ([1], {"a": int}, "f.json: the content must be a mapping, not list"),
    ({"a": "1"}, {"a": int}, "f.json: 'a' must be int, not str"),
    ({"a": True}, {"a": int}, "f.json: 'a' must be int, not bool"),
    ({}, {"a": int}, "f.json: key 'a' is missing"),
    ({"a": {"b": None}}, {"a": {"b": (int, float)}}, "f.json: 'a.b' must be int or float, not NoneType"),
    ({"a": [[1, "x"]]}, {"a": [[int]]}, r"f.json: 'a\[0\]\[1\]' must be int, not str"),
])
def test_check_schema_names_the_file_and_key(value, schema, message):
    from pathlib import Path
    with pytest.raises(CheckpointError, match=message):
        ck.check_schema(value, schema, Path("f.json"))
    ck.check_schema({"b": 1}, {"a?": int, "b": (int, type(None))}, Path("f.json"))  # optional, None allowed


def test_meta_sizes_must_match_the_vocabularies(tmp_path):
    model, cfg, src, tgt = _setup()
    ck.save_model(tmp_path / "m", model, cfg, src, tgt)
    meta = json.loads((tmp_path / "m" / "meta.json").read_text())
    (tmp_path / "m" / "meta.json").write_text(json.dumps({**meta, "src_vocab_size": meta["src_vocab_size"] + 1}))
    with pytest.raises(CheckpointError, match=r"src\.vocab\.json: \d+ tokens, but .*meta\.json says"):
        ck.load_model(tmp_path / "m")


def test_weights_files_get_the_usual_mode_not_0600(tmp_path):
    import os
    import stat

    from transduce.checkpoint import _save_tensors

    _save_tensors({"w": torch.ones(2)}, tmp_path / "w.safetensors")
    (tmp_path / "t.txt").write_text("x")
    mode = stat.S_IMODE(os.stat(tmp_path / "w.safetensors").st_mode)
    assert mode == stat.S_IMODE(os.stat(tmp_path / "t.txt").st_mode) and mode & 0o044
