"""transduce: recurrent encoder-decoder (sequence-to-sequence) models on PyTorch."""
from __future__ import annotations

from .config import Config, DecodeOptions
from .errors import CheckpointError, ConfigError, DataError, UserError
from .translator import Translation, Translator
from .version import __version__

__all__ = ["Config", "DecodeOptions", "Translation", "Translator", "CheckpointError", "ConfigError",
           "DataError", "UserError", "load", "__version__"]


def load(model_dir, device: str = "cpu", precision: str = "fp32"):
    """Load a trained model folder; returns a :class:`transduce.translator.Translator`.

    >>> translator = transduce.load("runs/g2p")          # doctest: +SKIP
    >>> translator.translate(["hello"], beam=5)[0].text   # doctest: +SKIP
    """
    return Translator.from_dir(model_dir, device=device, precision=precision)
