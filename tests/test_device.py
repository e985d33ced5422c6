"""device.py: device and precision resolution, autocast."""
import pytest
import torch

from transduce import device as dev
from transduce.errors import ConfigError

CPU = torch.device("cpu")


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_precision_follows_native_bf16(monkeypatch, native, expected):
    monkeypatch.setattr(dev, "cpu_has_fast_bf16", lambda: native)
    assert dev.resolve_precision(CPU, "auto") == expected
    for explicit in ("fp32", "bf16", "int8"):
        assert dev.resolve_precision(CPU, explicit) == explicit


@pytest.mark.parametrize("precision, message", [
    ("fp16", "'train.precision': fp16 needs a CUDA device"),
    ("fp8", "'train.precision': 'fp8' is not one of fp32, bf16, fp16, int8, auto"),
])
def test_precision_refused_where_it_cannot_run(precision, message):
    with pytest.raises(ConfigError, match=message):
        dev.resolve_precision(CPU, precision, key="train.precision")


@pytest.mark.parametrize("native", [True, False])
def test_autocast_auto_is_bf16_only_with_native_bf16(monkeypatch, native):
    monkeypatch.setattr(dev, "cpu_has_fast_bf16", lambda: native)
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with dev.autocast(CPU, "auto"):
        out = a @ b
        assert torch.is_autocast_enabled("cpu") is native
    assert out.dtype == (torch.bfloat16 if native else torch.float32)
    with dev.autocast(CPU, "fp32"):
        assert not torch.is_autocast_enabled("cpu")


def test_bf16_on_a_cpu_without_native_bf16_warns(monkeypatch):
    monkeypatch.setattr(dev, "cpu_has_fast_bf16", lambda: False)
    with pytest.warns(RuntimeWarning, match="slower than fp32"):
        with dev.autocast(CPU, "bf16"):
            pass


def test_resolve_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert dev.resolve_device("auto") == CPU
    with pytest.raises(ConfigError, match="'train.device': unknown device 'tpu9'"):
        dev.resolve_device("tpu9", key="train.device")
    with pytest.raises(ConfigError, match="CUDA is not available"):
        dev.resolve_device("cuda:0")


def test_more_processes_than_gpus_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert dev.resolve_device("auto", local_rank=0) == torch.device("cuda:0")
    with pytest.raises(ConfigError, match=r"'train.device': cuda:1 requested but 1 GPU\(s\) are visible "
                                          r"\(LOCAL_RANK 1: start at most 1 process\(es\) per machine, "
                                          r"or set train.device=cpu\)"):
        dev.resolve_device("auto", local_rank=1, key="train.device")
    with pytest.raises(ConfigError, match=r"cuda:3 requested but 1 GPU\(s\) are visible$"):
        dev.resolve_device("cuda:3")


def test_config_accepts_auto_precision():
    from transduce.config import load

    assert load(None, ["train.precision=auto"]).train.precision == "auto"
    with pytest.raises(ConfigError, match="train.precision"):
        load(None, ["train.precision=fp8"])


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp32")])
def test_translator_auto_precision(monkeypatch, native, expected):
    from transduce.config import load
    from transduce.model import Seq2Seq
    from transduce.translator import Translator
    from transduce.vocab import Vocab

    monkeypatch.setattr(dev, "cpu_has_fast_bf16", lambda: native)
    cfg = load(None, ["model.hidden=8", "model.emb_dim=4", "model.enc_layers=1", "model.dec_layers=1"])
    vocab = Vocab.build([["a", "b"]])
    model = Seq2Seq.from_config(cfg.model, len(vocab), len(vocab))
    tr = Translator(model, cfg, None, None, precision="auto")
    assert tr.precision == expected
