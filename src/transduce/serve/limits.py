"""The server's request budgets: one frozen dataclass, checked like a config section.

``transduce serve`` builds it from its flags (one flag per field, same name
with dashes); :func:`request_cost` is the one rule for what a request costs.
Past a limit the server answers (README, "REST server"):

* 413 more than ``max_texts`` texts, a text longer than ``max_chars``
  characters, or a request costing more than ``max_request_tokens``;
* 422 ``beam`` or ``nbest`` above ``max_beam`` (and every bad decoding option);
* 429 when admitting the request would put more than ``max_tokens_in_flight``
  tokens in flight for the model (``Retry-After: 1``);
* 504 when a request is not answered within ``timeout_s`` (its remaining
  batches are dropped; the server goes on).
"""
from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import dataclass

from ..config import MAX_BEAM, DecodeOptions, check_fields, ranged
from ..errors import ConfigError


@dataclass(frozen=True)
class ServeLimits:
    """Request budgets and the dynamic-batching knobs of one server."""

    max_texts: int = ranged(256, 1, 100_000)
    """Texts per request (413 past it)."""
    max_chars: int = ranged(2000, 1, 1_000_000)
    """Characters per text (413 past it)."""
    max_beam: int = ranged(32, 1, MAX_BEAM)
    """Largest beam and n-best a request may ask for (422 past it)."""
    max_request_tokens: int = ranged(262_144, 1)
    """Source tokens x beam of one request (413 past it)."""
    max_tokens_in_flight: int = ranged(1_048_576, 1)
    """Source tokens x beam admitted and not yet answered, per model (429 past it)."""
    batch_tokens: int = ranged(8192, 1)
    """Budget of one model batch: sentences x longest source x beam (one
    sentence over it still runs, alone)."""
    batch_wait_ms: float = ranged(5.0, 0.0, 1000.0)
    """How long a model waits to gather concurrent compatible requests into one
    batch (see batching.py); 0 turns dynamic batching off (one request per batch)."""
    timeout_s: float = ranged(60.0, 0.0, 86_400.0, lo_open=True)
    """Time limit of one request's decoding (504 past it)."""

    def __post_init__(self) -> None:
        try:
            check_fields(self)
        except ConfigError as exc:
            raise ConfigError(f"serve limit '{exc.key}': {exc.problem}", exc.key, exc.problem) from None


def beam_width(opts: DecodeOptions) -> int:
    """Hypotheses per sentence that ``opts`` decodes side by side (beam, else 1)."""
    return opts.beam if opts.method == "beam" else 1


def request_cost(lengths: list[int], opts: DecodeOptions) -> int:
    """What a request costs against the budgets: source tokens x beam."""
    return sum(lengths) * beam_width(opts)


def batch_cost(n_sentences: int, width: int, opts: DecodeOptions) -> int:
    """What one model batch costs: sentences x longest source (padded) x beam."""
    return n_sentences * width * beam_width(opts)


FLAG_HELP = {
    "max_texts": "texts per request (413 past it)",
    "max_chars": "characters per text (413 past it)",
    "max_beam": "largest beam and n-best a request may ask for (422 past it)",
    "max_request_tokens": "source tokens x beam of one request (413 past it)",
    "max_tokens_in_flight": "source tokens x beam admitted and not yet answered, per model (429 past it)",
    "batch_tokens": "budget of one model batch: sentences x longest source x beam",
    "batch_wait_ms": "how long a model gathers concurrent requests into one batch; 0 = no dynamic batching",
    "timeout_s": "time limit of one request's decoding (504 past it)",
}
"""The ``transduce serve`` flag of each field (``--max-texts`` ...)."""


def add_limit_args(parser: argparse.ArgumentParser) -> None:
    """One ``serve`` flag per ServeLimits field, defaulting to the field's default."""
    hints = typing.get_type_hints(ServeLimits)
    for f in dataclasses.fields(ServeLimits):
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=hints[f.name], default=f.default,
                            metavar=f.name.upper(), help=FLAG_HELP[f.name])


def limits_from_args(args: argparse.Namespace) -> ServeLimits:
    """The ServeLimits of parsed ``serve`` flags (ConfigError naming the flag)."""
    try:
        return ServeLimits(**{f.name: getattr(args, f.name) for f in dataclasses.fields(ServeLimits)})
    except ConfigError as exc:
        flag = f"--{exc.key.replace('_', '-')}"
        raise ConfigError(f"{flag}: {exc.problem}", exc.key, exc.problem) from None
