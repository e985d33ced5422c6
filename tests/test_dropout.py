import pytest
import torch
from torch import nn

from transduce.dropout import Dropout, dropout


@pytest.mark.parametrize("p", [0.1, 0.4, 0.9])
def test_drop_rate_and_scale(p):
    torch.manual_seed(0)
    x = torch.rand(1_000_003) + 0.5  # odd size: the last 64-bit draw is cut
    y = dropout(x, p)
    dropped = y == 0
    # binomial std of the rate: sqrt(p (1 - p) / n) < 5e-4
    assert abs(dropped.float().mean().item() - p) < 3e-3
    kept = ~dropped
    scale = (y[kept] / x[kept])
    expected = 32768 / (32768 - round(p * 32768))
    assert torch.allclose(scale, torch.full_like(scale, expected))
    assert abs(expected - 1 / (1 - p)) < 1e-3
    # the mean of the output stays the mean of the input
    assert abs(y.mean().item() / x.mean().item() - 1) < 5e-3


def test_mask_is_uniform_over_positions():
    """Every 16-bit lane of a 64-bit draw drops at the same rate (the top lane
    has only 15 random bits; the mask uses the low 15 of each)."""
    torch.manual_seed(1)
    x = torch.ones(400_000)
    lanes = (dropout(x, 0.5) == 0).view(-1, 4).float().mean(0)
    assert torch.all((lanes - 0.5).abs() < 6e-3), lanes


def test_gradient_is_the_mask_times_scale():
    torch.manual_seed(2)
    x = torch.randn(64, 33, requires_grad=True)
    y = dropout(x, 0.3)
    y.sum().backward()
    factor = torch.where(x.detach() != 0, y.detach() / x.detach(), torch.zeros(()))
    assert torch.allclose(x.grad, factor)
    values = torch.unique(x.grad)
    assert len(values) == 2 and values[0] == 0
    assert values[1].item() == pytest.approx(32768 / (32768 - 9830))


def test_seeded_repeat_and_dtype_and_shape():
    x = torch.randn(3, 5, 7, dtype=torch.bfloat16)
    torch.manual_seed(3)
    a = dropout(x, 0.2)
    torch.manual_seed(3)
    b = dropout(x, 0.2)
    assert torch.equal(a, b) and a.dtype == torch.bfloat16 and a.shape == x.shape
    assert not torch.equal(dropout(x, 0.2), a)  # the generator moved on
    assert dropout(torch.empty(0, 4), 0.5).shape == (0, 4)


def test_eval_zero_and_tiny_p_are_the_identity():
    x = torch.randn(10, 10)
    assert dropout(x, 0.5, training=False) is x
    assert dropout(x, 0.0) is x
    assert dropout(x, 1e-6) is x  # rounds to no element of 2^15
    torch.manual_seed(5)
    kept = (dropout(torch.ones(32768 * 10), 0.99999) > 0).sum()  # never all dropped: 1 in 2^15 kept
    assert 0 < kept < 30


def test_module_follows_train_and_eval():
    m = Dropout(0.5)
    assert isinstance(m, nn.Dropout) and m.p == 0.5
    x = torch.ones(1000)
    torch.manual_seed(4)
    assert (m(x) == 0).any()
    m.eval()
    assert m(x) is x


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_keeps_the_exact_scale(dtype):
    """Kept elements are x * scale rounded once: the scale itself is not rounded to bf16."""
    torch.manual_seed(6)
    x = torch.randn(50_000).to(dtype)
    y = dropout(x, 0.1)
    kept = y != 0
    scale = 32768 / (32768 - round(0.1 * 32768))
    assert torch.equal(y[kept], (x[kept].double() * scale).to(dtype))
    ratio = (y.double().sum() / x.double()[kept].sum()).item()
    assert abs(ratio - scale) < 2e-3
