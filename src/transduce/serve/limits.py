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
    """How long an idle model waits to gather compatible requests into one
    batch; 0 turns dynamic batching off (one request per batch)."""
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
