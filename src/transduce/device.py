"""Devices and precision: the one place that resolves ``auto`` and builds autocast.

bf16 autocast pays off on GPUs and on CPUs with native bf16 matrix units
(Intel AMX or AVX512-BF16). On other CPUs (e.g. AVX2-only) PyTorch emulates
bf16 matmuls, which is many times slower than fp32; transduce warns then.
"""
from __future__ import annotations

import contextlib
import functools
import warnings

import torch

from .config import PRECISIONS
from .errors import ConfigError

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str | torch.device, local_rank: int = 0, key: str = "device") -> torch.device:
    """``auto`` -> cuda:<local_rank> if available else cpu; otherwise torch.device(name).

    Raises ConfigError naming ``key`` for an unknown device, CUDA without a GPU, or a GPU
    index past the visible ones (more processes than GPUs on a machine).
    """
    if str(name) == "auto":
        device = torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    else:
        try:
            device = torch.device(name)
        except RuntimeError:
            raise ConfigError(f"'{key}': unknown device {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"'{key}': {name} requested but CUDA is not available")
    if device.type == "cuda" and device.index is None:
        device = torch.device(f"cuda:{local_rank}")
    if device.type == "cuda" and device.index >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        rank = f" (LOCAL_RANK {local_rank}: start at most {count} process(es) per machine, or set " \
               f"{key}=cpu)" if str(name) in ("auto", "cuda") and local_rank else ""
        raise ConfigError(f"'{key}': {device} requested but {count} GPU(s) are visible{rank}")
    return device


@functools.lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """True when /proc/cpuinfo lists AMX-BF16 or AVX512-BF16 (False if unknown)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            flags = next((line for line in fh if line.startswith("flags")), "")
    except OSError:
        return False
    return any(f in flags.split() for f in ("amx_bf16", "avx512_bf16"))


def fast_bf16(device: torch.device) -> bool:
    """Whether ``device`` runs bf16 matmuls natively (a bf16-capable GPU, or a
    CPU with AMX or AVX512-BF16)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_fast_bf16()


def resolve_precision(device: torch.device, precision: str, key: str = "precision") -> str:
    """``auto`` -> ``bf16`` where :func:`fast_bf16` holds, else ``fp32``; others unchanged.

    Raises ConfigError naming ``key`` for an unknown precision, fp16 off CUDA
    and int8 off the CPU.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"'{key}': {precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError(f"'{key}': fp16 needs a CUDA device, not {device}; use bf16 or auto on a CPU")
    if precision == "int8" and device.type != "cpu":
        raise ConfigError(f"'{key}': int8 runs on the CPU only, not on {device}")
    if precision == "auto":
        return "bf16" if fast_bf16(device) else "fp32"
    return precision


def autocast(device: torch.device, precision: str):
    """A context that runs under ``precision`` (fp32 and int8: no autocast)."""
    precision = resolve_precision(device, precision)
    if precision not in DTYPES:
        return contextlib.nullcontext()
    if precision == "bf16" and device.type == "cpu" and not cpu_has_fast_bf16():
        warnings.warn("bf16 on this CPU (no AMX/AVX512-BF16) is much slower than fp32; "
                      "use precision fp32 here", RuntimeWarning, stacklevel=2)
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision])
