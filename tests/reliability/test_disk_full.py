"""A disk that fills up during training: exit 2, the message, nothing lost, resume in place.

Two variants: a real small tmpfs (skipped where it cannot be mounted), and
ENOSPC injected into the writers the way safetensors and a JSON write report
it (safetensors raises its own SafetensorError, not an OSError).
"""
import errno
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from safetensors import SafetensorError

from conftest import tiny_config_dict
from transduce import checkpoint as ck
from transduce import cli

MESSAGE = "disk full (no space left on device); the previous checkpoint was left intact"


def _config(tmp_path: Path) -> Path:
    """The tiny config as a YAML file: 4 steps, a checkpoint every 4."""
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config_dict(train={"max_steps": 4, "valid_every": 4})))
    return path


def _snapshot(run: Path) -> dict[str, bytes]:
    """Every file of checkpoints/step-4, by relative path."""
    folder = run / "checkpoints" / "step-4"
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _leftovers(run: Path) -> list[Path]:
    """Temporary files and folders of writers, anywhere in or beside the run folder."""
    return [p for p in [*run.parent.iterdir(), *run.rglob(".*")] if ck.TEMP_NAME.match(p.name)]


def _resume_to_8(run: Path, capsys) -> tuple[int, str]:
    """``transduce train --resume RUN train.max_steps=8``: (exit code, the last stderr line)."""
    code = cli.main(["train", "--resume", str(run), "train.max_steps=8"])
    err = capsys.readouterr().err.strip().splitlines()
    return code, err[-1] if err else ""


def _check_full_then_free(run: Path, capsys, fill, free) -> None:
    """A first checkpoint, a full disk (exit 2, message, step-4 intact), then a resume in place."""
    assert cli.main(["train", str(_config(run.parent)), "--out", str(run)]) == 0
    before = _snapshot(run)
    fill()
    code, last = _resume_to_8(run, capsys)
    assert code == 2 and last.startswith("transduce: error: cannot write") and MESSAGE in last
    assert _snapshot(run) == before and _leftovers(run) == []
    ck.load_model(run / "checkpoints" / "step-4"), ck.load_training_state(run / "checkpoints" / "step-4")
    free()
    code, last = _resume_to_8(run, capsys)
    assert code == 0
    assert ck.load_model(run / "checkpoints" / "step-8").meta["step"] == 8


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs at tmp_path/disk (skip when it cannot be mounted)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if shutil.which("mount") is None or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _fill(disk: Path) -> None:
    """Write disk/filler until the file system is full."""
    with open(disk / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


def test_a_real_full_disk(small_disk, capsys):
    _check_full_then_free(small_disk / "run", capsys, lambda: _fill(small_disk),
                          lambda: (small_disk / "filler").unlink())


def _safetensors_full(*args, **kwargs):
    """What safetensors raises when the disk fills up while it serializes."""
    raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")


def _json_full(*args, **kwargs):
    """What a JSON (text) write raises on a full disk."""
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("target, fault", [("save_file", _safetensors_full),  # weights and trainer state
                                           ("_write_text", _json_full)])
def test_an_injected_full_disk(tmp_path, capsys, monkeypatch, target, fault):
    _check_full_then_free(tmp_path / "run", capsys, lambda: monkeypatch.setattr(ck, target, fault),
                          monkeypatch.undo)


def test_a_log_record_on_a_full_disk(tmp_path, monkeypatch):
    from transduce import runlog

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    log = runlog.RunLog(tmp_path, tensorboard=False)
    monkeypatch.setattr(runlog, "open", full, raising=False)
    with pytest.raises(ck.CheckpointError, match=r"cannot write the run log .*log\.jsonl: disk full"):
        log.write(3, 1.0, {"split": "train", "loss": 1.0})
