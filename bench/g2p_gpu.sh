#!/usr/bin/env bash
# The g2p recipe as an ensemble, trained on one GPU in about ten minutes (issue 14):
#   1. trains six members of the `g2p` recipe side by side on the one GPU, each for at most
#      $MINUTES minutes (default 5; its cosine schedule follows the time spent when the budget
#      ends first): seeds 1, 2, 3; 3 layers, seeds 1 and 2; Bahdanau attention;
#   2. scores each on the validation split, then the ensembles of the best 2, 3, ... 6 of them
#      (ranked by validation WER), and chooses the ensemble with the lowest validation WER;
#   3. scores the test split once: the chosen ensemble and the recipe's single model (seed 1),
#      and adds their rows to bench/RESULTS.md.
# Nothing is chosen on the test split. Members and scores go to runs/g2p-gpu; logs and the
# summary to $OUT (if set; else runs/g2p-gpu/out).
#
#   bench/g2p_gpu.sh                  # on the GPU machine (the repository with its requirements)
#   bench/g2p_gpu.sh --smoke          # tiny models and 60 words on any device: checks the script
set -uo pipefail

smoke=0
while [ $# -gt 0 ]; do
  case $1 in
    --smoke) smoke=1; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "g2p_gpu.sh: unknown option $1 (--smoke)" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/.."
runs=${RUNS:-runs/g2p-gpu}
out=${OUT:-$runs/out}
mkdir -p "$runs" "$out"
py=${PYTHON:-python3}
minutes=${MINUTES:-5}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} PYTHONUNBUFFERED=1
start=$(date +%s)
log() { echo "[$(( $(date +%s) - start )) s] $*" | tee -a "$out/summary.txt"; }

declare -A member=(
  [s1]=""
  [s2]="train.seed=2"
  [s3]="train.seed=3"
  [deep1]="model.enc_layers=3 model.dec_layers=3"
  [deep2]="model.enc_layers=3 model.dec_layers=3 train.seed=2"
  [bahdanau]="model.family=bahdanau"
)
names=(s1 s2 s3 deep1 deep2 bahdanau)
extra=("train.max_minutes=$minutes")
score=(search.batch_size=256)
limit=()
if [ $smoke = 1 ]; then
  extra+=(train.max_steps=20 train.valid_every=10 train.valid_max_sentences=20 train.warmup_steps=2
          model.emb_dim=16 model.hidden=32)
  limit=(--limit 60)
fi

log "machine: $("$py" -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')" 2>&1)"
log "training ${names[*]} side by side (at most $minutes minutes each)"
for n in "${names[@]}"; do
  # shellcheck disable=SC2086
  "$py" bench/quality.py g2p ${member[$n]} "${extra[@]}" "${score[@]}" --out "$runs/$n" --split valid \
    "${limit[@]}" --json-out "$runs/$n.valid.json" > "$out/train-$n.log" 2>&1 &
done
wait
for n in "${names[@]}"; do
  log "$n: $(grep -h '^| g2p' "$out/train-$n.log" || echo "failed (see train-$n.log)")"
done

# Rank by validation WER; the ensembles of the best k, each written into its k-th member's folder.
mapfile -t ranked < <("$py" - "$runs" "${names[@]}" <<'EOF'
import json, sys
from pathlib import Path
runs, names = Path(sys.argv[1]), sys.argv[2:]
got = {n: json.loads((runs / f"{n}.valid.json").read_text())["word_error_rate"]
       for n in names if (runs / f"{n}.valid.json").exists()}
print("\n".join(sorted(got, key=got.get)))
EOF
)
log "ranked by validation WER: ${ranked[*]}"
for ((k = 2; k <= ${#ranked[@]}; k++)); do
  others=()
  for ((i = 0; i < k - 1; i++)); do others+=("$runs/${ranked[i]}"); done
  "$py" bench/quality.py g2p "${score[@]}" --out "$runs/${ranked[k-1]}" --no-train --split valid "${limit[@]}" \
    --ensemble "${others[@]}" --json-out "$runs/top$k.valid.json" > "$out/ensembles.log.$k" 2>&1 &
done
wait
cat "$out"/ensembles.log.* > "$out/ensembles.log" 2>/dev/null; rm -f "$out"/ensembles.log.*
best=$("$py" - "$runs" "${#ranked[@]}" <<'EOF'
import json, sys
from pathlib import Path
runs, n = Path(sys.argv[1]), int(sys.argv[2])
got = {k: json.loads((runs / f"top{k}.valid.json").read_text())["word_error_rate"]
       for k in range(2, n + 1) if (runs / f"top{k}.valid.json").exists()}
for k, wer in got.items():
    print(f"top {k}: validation WER {wer:.2f}%", file=sys.stderr)
print(min(got, key=lambda k: (got[k], k)) if got else 0)
EOF
)
grep -h '^| g2p' "$out/ensembles.log" | tee -a "$out/summary.txt"
log "chosen on validation: the best $best"
[ "$best" -ge 2 ] || { log "no ensemble scored; stopping"; exit 1; }

others=()
for ((i = 0; i < best - 1; i++)); do others+=("$runs/${ranked[i]}"); done
"$py" bench/quality.py g2p "${score[@]}" --out "$runs/${ranked[best-1]}" --no-train "${limit[@]}" \
  --ensemble "${others[@]}" --json-out "$runs/chosen.test.json" > "$out/test.log" 2>&1 &
"$py" bench/quality.py g2p "${score[@]}" --out "$runs/s1" --no-train "${limit[@]}" \
  --json-out "$runs/s1.test.json" > "$out/test-s1.log" 2>&1 &
wait
cat "$out/test-s1.log" >> "$out/test.log"; rm -f "$out/test-s1.log"
mapfile -t rows < <(grep -h '^| g2p' "$out/test.log")
for row in "${rows[@]}"; do log "test: $row"; done
if [ $smoke = 0 ]; then
  "$py" - "${rows[@]}" <<'EOF'
import sys
sys.path.insert(0, "bench")
from quality import add_row
from results_md import RESULTS
for row in sys.argv[1:]:
    add_row(RESULTS, row, row.rsplit("`", 2)[1])
EOF
  cp bench/RESULTS.md "$out/RESULTS.md"
fi
log "done in $(( $(date +%s) - start )) s"
