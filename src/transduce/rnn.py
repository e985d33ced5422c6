"""The one place that knows an LSTM state is ``(h, c)`` and a GRU/RNN state is ``h``.

Everything else (encoder, bridge, decoder, search) handles a recurrent state
as an opaque ``Hidden`` value through the helpers below, so that no other
module ever unpacks ``(h, c)``.

Shapes: ``L`` layers, ``D`` directions, ``B`` batch, ``H`` hidden size.
A ``Hidden`` is ``Tensor [L, B, H]`` (GRU, RNN) or ``(h, c)`` of two such
tensors (LSTM); the batch is always dimension 1.

Weight init (``init_rnn``): every weight matrix uniform(-r, r) or Xavier
uniform per ``cfg.model.init``; biases zero, except the LSTM forget-gate
bias, which sums to 1 (``b_ih`` forget slice 1, ``b_hh`` forget slice 0), so
that the cell remembers by default early in training (Jozefowicz et al. 2015).
"""
from __future__ import annotations

from typing import Callable, Union

import torch
from torch import Tensor, nn

from .dropout import dropout

CELLS: dict[str, type[nn.RNNBase]] = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}

Hidden = Union[Tensor, tuple[Tensor, Tensor]]


def make_rnn(cell: str, input_size: int, hidden: int, layers: int,
             dropout: float = 0.0, bidirectional: bool = False) -> nn.RNNBase:
    """A batch-first multi-layer RNN of kind ``cell`` (``CELLS`` key)."""
    return CELLS[cell](input_size, hidden, num_layers=layers, batch_first=True,
                       dropout=dropout if layers > 1 else 0.0, bidirectional=bidirectional)


def is_lstm_state(hidden: Hidden) -> bool:
    """True when ``hidden`` is an LSTM ``(h, c)`` pair."""
    return isinstance(hidden, tuple)


def map_hidden(fn: Callable[[Tensor], Tensor], hidden: Hidden) -> Hidden:
    """Apply ``fn`` to ``h`` (and ``c``)."""
    if is_lstm_state(hidden):
        return (fn(hidden[0]), fn(hidden[1]))
    return fn(hidden)


def split(hidden: Hidden) -> tuple[Tensor, Tensor | None]:
    """``(h, c)`` of an LSTM state, ``(h, None)`` of a GRU/RNN state."""
    if is_lstm_state(hidden):
        return hidden[0], hidden[1]
    return hidden, None


def select(hidden: Hidden, idx: Tensor) -> Hidden:
    """Batch rows ``idx`` ([K] long) of a state [L, B, H] -> [L, K, H]."""
    return map_hidden(lambda t: t.index_select(1, idx), hidden)


def top(hidden: Hidden) -> Tensor:
    """The top layer's output state ``h[-1]``: [B, H] (never ``c``)."""
    return split(hidden)[0][-1]


def layers(hidden: Hidden) -> int:
    """Number of layers L of a state [L, B, H]."""
    return split(hidden)[0].size(0)


def merge_directions(hidden: Hidden, directions: int) -> Hidden:
    """nn.RNN final state [L*D, B, Hd] -> [L, B, D*Hd] (forward half first).

    PyTorch orders ``h_n`` layer-major (l0 fwd, l0 bwd, l1 fwd, ...), and the
    output sequence concatenates [fwd; bwd]; the merged state matches it.
    """
    if directions == 1:
        return hidden

    def merge(t: Tensor) -> Tensor:
        ld, b, hd = t.shape
        t = t.view(ld // directions, directions, b, hd)  # [L, D, B, Hd]
        return t.permute(0, 2, 1, 3).reshape(ld // directions, b, directions * hd)

    return map_hidden(merge, hidden)


def zeros(cell: str, n_layers: int, batch: int, hidden: int, like: Tensor) -> Hidden:
    """An all-zero state [L, B, H] with ``like``'s device and dtype."""
    z = like.new_zeros(n_layers, batch, hidden)
    return (z, z.clone()) if cell == "lstm" else z


def as_cell_state(cell: str, h: Tensor, c: Tensor | None = None) -> Hidden:
    """Build a state from ``h`` [L, B, H] (LSTM: ``c`` or zeros when None)."""
    if cell != "lstm":
        return h
    return (h, c if c is not None else torch.zeros_like(h))


def contiguous(hidden: Hidden) -> Hidden:
    """A state whose tensors are contiguous (nn.RNN requires it)."""
    return map_hidden(lambda t: t.contiguous(), hidden)


def to_autocast_dtype(t: Tensor) -> Tensor:
    """``t`` in the active autocast dtype of its device (unchanged outside autocast).

    CPU autocast runs nn.LSTM in bf16 but does not cast its input, and oneDNN
    then fails on an fp32 input with bf16 weights; casting first fixes that.
    """
    kind = t.device.type
    if t.is_floating_point() and torch.is_autocast_enabled(kind):
        return t.to(torch.get_autocast_dtype(kind))
    return t


def run_seq(rnn: nn.RNNBase, x: Tensor, hidden: Hidden | None = None) -> tuple[Tensor, Hidden]:
    """Whole-sequence call x [B, T, I] -> (out [B, T, D*H], final [L*D, B, H]), autocast-safe."""
    if hidden is not None:
        hidden = map_hidden(lambda t: to_autocast_dtype(t).contiguous(), hidden)
    return rnn(to_autocast_dtype(x), hidden)


_CELL_FNS = {"lstm": torch.lstm_cell, "gru": torch.gru_cell, "rnn": torch.rnn_tanh_cell}


def cell_kind(rnn: nn.RNNBase) -> str:
    """The ``CELLS`` key of a module (``rnn`` covers tanh RNNs only)."""
    if isinstance(rnn, nn.LSTM):
        return "lstm"
    return "gru" if isinstance(rnn, nn.GRU) else "rnn"


def run_step(rnn: nn.RNNBase, x: Tensor, hidden: Hidden) -> tuple[Tensor, Hidden]:
    """One time step of a unidirectional ``rnn``: x [B, I] -> (out [B, H], hidden).

    A Python stack of fused cell kernels (``torch.lstm_cell`` ...) over the
    module's own weights: it equals ``rnn(x[:, None], hidden)`` (to 1e-6) and
    applies the same inter-layer dropout, but measured ~1.5-2x faster than a
    length-1 ``nn.LSTM`` call for forward + backward on CPU. Under autocast
    the cells' matmuls run in the autocast dtype (weight casts cached by
    autocast), their inputs and states are in the weights' dtype (a length-1
    oneDNN ``nn.LSTM`` under CPU autocast re-packs its weights at every call:
    ~6x slower backward). A module without raw weights (dynamic int8, see
    translator.quantize_int8) runs itself on a length-1 sequence.
    """
    if not hasattr(rnn, "weight_ih_l0"):
        out, hidden = run_seq(rnn, x.unsqueeze(1), hidden)  # [B, 1, H]
        return out.squeeze(1), hidden
    kind = cell_kind(rnn)
    fn = _CELL_FNS[kind]
    dtype = rnn.weight_ih_l0.dtype
    # per-layer views by unbind: one backward node (indexing [layer] would zero-fill a
    # [L, B, H] gradient per layer and step)
    h_prev, c_prev = split(hidden)
    h_prev = h_prev.to(dtype).unbind(0)
    c_prev = c_prev.to(dtype).unbind(0) if c_prev is not None else None
    hs, cs = [], []
    inp = x.to(dtype)
    for layer in range(rnn.num_layers):
        weights = [getattr(rnn, f"{w}_l{layer}") for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        if kind == "lstm":
            h, c = fn(inp, (h_prev[layer], c_prev[layer]), *weights)
            cs.append(c)
        else:
            h = fn(inp, h_prev[layer], *weights)
        hs.append(h)
        inp = h
        if layer + 1 < rnn.num_layers and rnn.dropout > 0:
            inp = dropout(inp, rnn.dropout, rnn.training)
    h_all = torch.stack(hs)  # [L, B, H]
    return h, ((h_all, torch.stack(cs)) if kind == "lstm" else h_all)


def init_rnn(rnn: nn.RNNBase, init: str, init_range: float) -> None:
    """Initialise ``rnn`` in place (see the module docstring)."""
    for name, p in rnn.named_parameters():
        if name.startswith("bias"):
            nn.init.zeros_(p)
        elif init == "xavier":
            nn.init.xavier_uniform_(p)
        else:
            nn.init.uniform_(p, -init_range, init_range)
    if isinstance(rnn, nn.LSTM):
        h = rnn.hidden_size
        with torch.no_grad():
            for name, p in rnn.named_parameters():
                if name.startswith("bias_ih"):
                    p[h:2 * h].fill_(1.0)  # gate order i, f, g, o
