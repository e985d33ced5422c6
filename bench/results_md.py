"""Shared by the benchmark scripts: rewrite one section of bench/RESULTS.md,
name the CPU or GPU."""
from __future__ import annotations

import platform
from pathlib import Path
from typing import Callable

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; one writer at a time is then the user's care
    fcntl = None

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def write_section(heading: str, text: str, path: Path = RESULTS) -> None:
    """Replace the section that starts with ``heading`` (or append it); others stay as they are.

    ``text`` starts with the heading line itself; a section runs to the next ``## `` heading.
    """
    def change(old: str) -> str:
        start = old.find(heading)
        if start < 0:
            return old.rstrip("\n") + "\n\n" + text
        end = old.find("\n## ", start + len(heading))
        return old[:start] + text.rstrip("\n") + "\n" + (old[end:] if end >= 0 else "")
    edit(path, change)


def edit(path: Path, change: Callable[[str], str]) -> None:
    """Rewrite ``path`` (a new one starts as "# Benchmark results") as ``change(its text)``,
    holding an exclusive lock on it meanwhile, so that benchmark jobs run side by side (e.g. two
    `quality.py --write` scorings started together) each add their row instead of one losing it."""
    with open(path, "a+", encoding="utf-8") as f:
        if fcntl is not None:
            fcntl.flock(f, fcntl.LOCK_EX)  # released when the file closes
        f.seek(0)
        new = change(f.read() or "# Benchmark results\n")
        f.seek(0)
        f.truncate()
        f.write(new.rstrip("\n") + "\n")


def publish(heading: str, text: str, write: bool, path: Path = RESULTS) -> None:
    """Print a section; with ``write``, also put it into ``path`` (write_section)."""
    print(text)
    if write:
        write_section(heading, text, path)
        print(f"written to {path}")


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (the platform's words elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            line = next((l for l in fh if l.startswith("model name")), "")
    except OSError:
        line = ""
    return line.split(":", 1)[1].strip() if line else platform.processor() or platform.machine()


def device_name(device) -> str:
    """The GPU's name for a CUDA device, else the CPU's (cpu_name)."""
    if getattr(device, "type", str(device)).startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(device)
    return cpu_name()
