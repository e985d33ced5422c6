"""bench/bench_serve.py runs end to end on a toy model and reports every table (tiny settings)."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_serve.py"


@pytest.mark.slow
def test_bench_serve_smoke(tmp_path, toy_overrides):
    from transduce.cli import main

    assert main(["train", "toy", *toy_overrides, "--out", str(tmp_path / "toy")]) == 0
    out = subprocess.run([sys.executable, str(BENCH), "--model", str(tmp_path / "toy"), "--smoke",
                          "--requests", "20", "--mixed", "20", "--burst", "30", "--max-texts", "4"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rows = re.findall(r"^\| (1|16) \| (\d+) \|.*\| (\d+\.\d\d)x \|$", out.stdout, re.M)
    assert [r[0] for r in rows] == ["1", "16"] and all(int(r[1]) > 0 for r in rows)
    assert re.search(r"^\| dynamic batching \| \d+ \| \d+ \| [1-9]\d* \|", out.stdout, re.M)
    burst = re.search(r"^\| 30 \| (\d+) \| (\d+) \| 0 \| 0 \|", out.stdout, re.M)  # no 5xx, none dropped
    assert burst and int(burst[1]) + int(burst[2]) == 30
    assert "Goals: throughput at 16 clients" in out.stdout
