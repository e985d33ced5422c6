# Shared start of the bench/*.sh scripts, sourced after their options are read:
#   . bench/common.sh DEFAULT_RUNS
# works from the repository root and sets $runs (RUNS, default DEFAULT_RUNS), $out (OUT,
# default $runs/out; both made), $py (PYTHON, default python3), $start and log MESSAGE
# (the seconds since the start, the message, also appended to $out/summary.txt); with
# smoke=1, $tiny and $limit for --smoke runs (else empty); by_wer NAME... ranks scored runs.
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit
runs=${RUNS:-$1}
out=${OUT:-$runs/out}
mkdir -p "$runs" "$out"
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
start=$(date +%s)
# --smoke runs: tiny models trained for a few steps ($tiny, g2p recipe overrides) and few words scored
tiny=() limit=()
[ "${smoke:-0}" = 1 ] && tiny=(train.max_steps=20 train.valid_every=10 train.valid_max_sentences=20
                              train.warmup_steps=2 model.emb_dim=16 model.hidden=32) limit=(--limit 60)
by_wer() {  # NAME...: those with a validation score ($runs/NAME.valid.json), lowest WER first
  "$py" - "$runs" "$@" <<'EOF2'
import json, sys
from pathlib import Path
runs, names = Path(sys.argv[1]), sys.argv[2:]
got = {n: json.loads((runs / f"{n}.valid.json").read_text())["word_error_rate"]
       for n in names if (runs / f"{n}.valid.json").exists()}
print("\n".join(sorted(got, key=got.get)))  # stable: the earlier of equals first
EOF2
}

log() { echo "[$(( $(date +%s) - start )) s] $*" | tee -a "$out/summary.txt"; }
