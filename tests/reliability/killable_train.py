"""``python killable_train.py DELAY ARGS...``: ``transduce ARGS...`` that announces its moments.

Used by test_kill_resume.py. Before each low-level checkpoint write (weights,
optimizer/RNG tensors, JSON) it prints ``@write NAME`` on stderr and sleeps
DELAY seconds inside the write (the temporary folder exists then), which
widens the window for a SIGKILL inside a checkpoint write; after each update
it prints ``@step``. Nothing else changes: the results are those of the CLI.
"""
import sys
import time

import torch

from transduce import checkpoint, cli, train


def _announced(name, write, delay):
    """``write`` preceded by an ``@write`` line and a sleep of ``delay`` seconds."""
    def slow(*args):
        print(f"@write {name}", file=sys.stderr, flush=True)
        time.sleep(delay)
        return write(*args)
    return slow


def _announced_step(step):
    """``Trainer.train_step`` followed by an ``@step`` line."""
    def announced(self, group, ratio, stats):
        step(self, group, ratio, stats)
        print("@step", file=sys.stderr, flush=True)
    return announced


def main() -> int:
    """Patch the writers and the step, then run the CLI on the remaining arguments."""
    delay = float(sys.argv[1])
    torch.set_num_threads(1)
    for name in ("_save_module", "_save_tensors", "_write_text"):
        setattr(checkpoint, name, _announced(name, getattr(checkpoint, name), delay))
    train.Trainer.train_step = _announced_step(train.Trainer.train_step)
    return cli.main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
