"""transduce: recurrent encoder-decoder (sequence-to-sequence) models on PyTorch."""
from __future__ import annotations

from .config import Config, DecodeOptions
from .errors import CheckpointError, ConfigError, DataError, UserError
from .translator import Translation, Translator
from .version import __version__

__all__ = ["Config", "DecodeOptions", "Translation", "Translator", "CheckpointError", "ConfigError",
           "DataError", "UserError", "ensemble", "load", "__version__"]


def load(model_dir, device: str = "cpu", precision: str = "fp32"):
    """Load a trained model folder; returns a :class:`transduce.translator.Translator`.

    >>> translator = transduce.load("runs/g2p")          # doctest: +SKIP
    >>> translator.translate(["hello"], beam=5)[0].text   # doctest: +SKIP
    """
    return Translator.from_dir(model_dir, device=device, precision=precision)


def ensemble(model_dirs, out_dir, rescore=()):
    """Write an ensemble folder of the model folders ``model_dirs`` (the CLI's ``transduce
    ensemble RUN1 RUN2 --out DIR``) and return its path; ``load`` it like any model folder.
    ``rescore``: model folders that re-rank its beam (``--rescore``; then one model folder
    will do), weighted by the decoding option ``rescore_weight``.

    >>> transduce.ensemble(["runs/g2p", "runs/g2p-2"], "runs/g2p-ens")   # doctest: +SKIP
    >>> transduce.load("runs/g2p-ens").translate(["hello"])[0].text      # doctest: +SKIP
    >>> transduce.ensemble(["runs/g2p"], "runs/g2p-r", rescore=["runs/g2p-r2l"])  # doctest: +SKIP
    """
    from .checkpoint import write_ensemble

    return write_ensemble(list(model_dirs), out_dir, list(rescore))
