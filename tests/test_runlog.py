"""The run log: exact JSONL lines, null for non-finite values, ratio notes, truncation on resume."""
import json
import math

from transduce.runlog import RunLog


class FakeWriter:
    """Records add_scalar calls like a SummaryWriter."""

    def __init__(self):
        self.scalars = []

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, value, step))


def test_write_puts_step_first_time_last_and_null_for_non_finite(tmp_path):
    log = RunLog(tmp_path, tensorboard=False)
    log.write(3, 1.23456, {"split": "train", "loss": math.nan, "ppl": math.inf, "lr": 0.5, "n": 7})
    log.write(4, 2.0, {"split": "valid", "bleu": -math.inf})
    assert (tmp_path / "log.jsonl").read_text() == (
        '{"step": 3, "split": "train", "loss": null, "ppl": null, "lr": 0.5, "n": 7, "time": 1.235}\n'
        '{"step": 4, "split": "valid", "bleu": null, "time": 2.0}\n')


def test_a_disabled_log_writes_nothing(tmp_path):
    log = RunLog(tmp_path, tensorboard=True, enabled=False)
    log.write(1, 0.0, {"split": "train", "loss": 1.0})
    log.note_ratio(1, 0.0, 0.5)
    log.truncate(0)
    assert not (tmp_path / "log.jsonl").exists() and not (tmp_path / "tensorboard").exists()
    assert log.tf_logged == 0.5  # the counter still moves on every rank


def test_ratio_is_logged_when_it_moves_by_a_hundredth(tmp_path, monkeypatch):
    log, writer = RunLog(tmp_path, tensorboard=True), FakeWriter()
    monkeypatch.setattr(log, "_tensorboard", lambda: writer)
    for step, ratio in enumerate([1.0, 1.0, 0.995, 0.985, 0.98]):
        log.note_ratio(step, 0.0, ratio)
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [(r["step"], r["tf_ratio"]) for r in records] == [(0, 1.0), (3, 0.985)]
    ratios = [(step, value) for tag, value, step in writer.scalars if tag == "train/tf_ratio"]
    # every change; a ratio that also goes to log.jsonl reaches TensorBoard a second time with its record
    assert ratios == [(0, 1.0), (0, 1.0), (2, 0.995), (3, 0.985), (3, 0.985), (4, 0.98)]
    assert log.tf_logged == 0.985


def test_tensorboard_gets_numeric_values_but_step_split_time_epoch(tmp_path, monkeypatch):
    log, writer = RunLog(tmp_path, tensorboard=True), FakeWriter()
    monkeypatch.setattr(log, "_tensorboard", lambda: writer)
    log.write(5, 1.0, {"split": "valid", "epoch": 2, "loss": 1.5, "ppl": math.inf, "note": "x"})
    assert writer.scalars == [("valid/loss", 1.5, 5)]


def test_truncate_drops_records_after_the_resumed_step(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text('{"step": 2, "split": "train"}\n{"split": "data"}\nnot json\n'
                    '{"step": 4, "split": "valid"}\n{"step": 5, "split": "train"}\n{"step": 3}\n')
    RunLog(tmp_path, tensorboard=False).truncate(4)
    assert path.read_text() == ('{"step": 2, "split": "train"}\n{"split": "data"}\n'
                                '{"step": 4, "split": "valid"}\n{"step": 3}\n')
    RunLog(tmp_path / "nothing", tensorboard=False).truncate(4)  # no log yet: nothing to do
