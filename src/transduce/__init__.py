"""transduce: recurrent encoder-decoder (sequence-to-sequence) models on PyTorch."""
from __future__ import annotations

__version__ = "0.1.0"

from .config import Config
from .errors import CheckpointError, ConfigError, DataError, UserError

__all__ = ["Config", "CheckpointError", "ConfigError", "DataError", "UserError", "load", "__version__"]


def load(model_dir, device: str = "cpu", precision: str = "fp32"):
    """Load a trained model folder; returns a :class:`transduce.translator.Translator`.

    >>> translator = transduce.load("runs/g2p")          # doctest: +SKIP
    >>> translator.translate(["hello"], beam=5)[0].text   # doctest: +SKIP
    """
    from .translator import Translator

    return Translator.from_dir(model_dir, device=device, precision=precision)
