"""``train.processes``: data-parallel worker processes started on this machine.

``transduce train ... train.processes=2`` (or the same key in a recipe or the
API's config) starts that many processes itself, in the environment torchrun
would give them (RANK, WORLD_SIZE, LOCAL_RANK, a free localhost port), and
each runs the ordinary ``Trainer``: process group, DistributedDataParallel,
rank 0 validating and writing, exactly as under torchrun (train.py says how
the batches are shared). On the CPU the processes split the threads: small
recurrent models use a second thread poorly, and on the 2-core Xeon two
whole demo runs back to back saw 1.28x the tokens with two one-thread
processes (bench/RESULTS.md, "Demo"; short runs of bench/processes.py on
the noisy host: 1.07x in the median).

Errors stay the user's kind: a worker's UserError or TrainingDiverged is
raised again in the caller with its message (the CLI prints it on one line),
and when one worker fails the others are stopped. Ctrl-C reaches every worker;
they agree on it (``Workers.agree``) and stop, save and exit together.
"""
from __future__ import annotations

import os
import signal
import socket
import time
import traceback
from pathlib import Path

import torch
import torch.multiprocessing as mp

from .config import Config
from .device import resolve_device
from .errors import ConfigError, UserError

GRACE_S = 30.0
"""How long the other workers get to finish on their own after one has failed."""


def wanted(cfg: Config) -> bool:
    """True when ``cfg`` asks for worker processes and no launcher (torchrun) started this one."""
    return cfg.train.processes > 1 and "RANK" not in os.environ


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, world: int, port: int, threads: int, cfg: Config, out_dir: str,
            resume: bool, init_from: str | None, results) -> None:
    """One worker: the torchrun environment, its share of the threads, the Trainer."""
    from .train import train  # here, not at import: train.py calls this module

    signal.signal(signal.SIGINT, signal.default_int_handler)  # the parent ignores Ctrl-C; workers act on it
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(threads)
    try:
        results.put((rank, "ok", train(cfg, out_dir, resume, init_from)))
    except KeyboardInterrupt:
        results.put((rank, "interrupted", None))
    except Exception as exc:  # noqa: BLE001 - relayed to the caller, which raises it
        text = traceback.format_exc()
        try:
            results.put((rank, "error", (exc, text)))
        except Exception:  # noqa: BLE001 - an exception that does not pickle: its text
            results.put((rank, "error", (RuntimeError(str(exc)), text)))


def launch(cfg: Config, out_dir: str | Path, resume: bool = False,
           init_from: str | Path | None = None) -> dict:
    """Train ``cfg`` in ``cfg.train.processes`` worker processes; rank 0's summary."""
    world = cfg.train.processes
    device = resolve_device(cfg.train.device, key="train.device")
    if device.type == "cuda" and world > torch.cuda.device_count():
        raise ConfigError(f"'train.processes': {world} processes need {world} GPUs, "
                          f"{torch.cuda.device_count()} are visible (or set train.device=cpu)")
    threads = max(1, torch.get_num_threads() // world) if device.type == "cpu" else 1
    ctx = mp.get_context("spawn")
    results = ctx.SimpleQueue()
    args = (world, _free_port(), threads, cfg, str(out_dir), resume,
            None if init_from is None else str(init_from), results)
    procs = [ctx.Process(target=_worker, args=(rank, *args), name=f"transduce-worker-{rank}")
             for rank in range(world)]
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the workers' to handle
    try:
        for proc in procs:
            proc.start()
        outcome = _wait(procs, results)
    finally:
        signal.signal(signal.SIGINT, previous)
        for proc in procs:
            if proc.is_alive():
                proc.kill()
            proc.join()
    return _result(outcome, procs)


def _wait(procs, results) -> dict[int, tuple]:
    """Collect every worker's (status, payload); stop the rest GRACE_S after one fails."""
    outcome: dict[int, tuple] = {}
    failed_at = None
    while len(outcome) < len(procs):
        while not results.empty():
            rank, status, payload = results.get()
            outcome[rank] = (status, payload)
            if status != "ok" and failed_at is None:
                failed_at = time.monotonic()
        dead = [p for r, p in enumerate(procs) if r not in outcome and not p.is_alive() and results.empty()]
        if dead and failed_at is None:
            failed_at = time.monotonic()  # a worker died without a word (killed, out of memory)
        if failed_at is not None and (time.monotonic() - failed_at > GRACE_S
                                      or all(not p.is_alive() for p in procs)):
            break
        time.sleep(0.05)
    return outcome


def _result(outcome: dict[int, tuple], procs) -> dict:
    """Rank 0's summary, or the most telling failure raised again."""
    if all(status == "ok" for status, _ in outcome.values()) and len(outcome) == len(procs):
        return outcome[0][1]
    errors = [payload for status, payload in outcome.values() if status == "error"]
    from .train import TrainingDiverged

    for exc, _ in errors:
        if isinstance(exc, (UserError, TrainingDiverged)):
            raise exc
    if errors:
        exc, text = errors[0]
        raise RuntimeError(f"a training worker failed:\n{text}") from exc
    if any(status == "interrupted" for status, _ in outcome.values()):
        raise KeyboardInterrupt
    codes = ", ".join(f"worker {r}: exit code {p.exitcode}" for r, p in enumerate(procs) if r not in outcome)
    raise RuntimeError(f"training workers stopped without a result ({codes}); the run folder keeps "
                       f"the checkpoints written so far")
