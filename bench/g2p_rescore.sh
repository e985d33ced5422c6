#!/usr/bin/env bash
# The g2p recipe re-ranked by a right-to-left model (issue 14):
#   1. trains the `g2p` recipe (left to right, L2R) and the same recipe with
#      tokenizer.reverse_target=true (right to left, R2L) side by side, one thread each, for
#      at most $MINUTES minutes each (default: none, the recipe's 14,000 steps); each is
#      scored on the validation split;
#   2. scores the L2R model's beam re-ranked by the R2L model (transduce ensemble --rescore)
#      on the validation split for each weight of $WEIGHTS (search.rescore_weight), two at a
#      time, and chooses the weight with the lowest validation WER (ties: the smaller weight);
#   3. scores the test split once: the L2R model alone and re-ranked with the chosen weight,
#      and adds both rows to bench/RESULTS.md.
# Nothing is chosen on the test split. Runs and scores go to $RUNS (default runs/g2p-rescore:
# $RUNS/l2r, $RUNS/r2l; L2R=... R2L=... name other run folders), logs and the summary to
# $OUT (default $RUNS/out).
#
#   bench/g2p_rescore.sh                       # train both, then choose and score
#   MINUTES=140 bench/g2p_rescore.sh           # ... each under a time budget
#   bench/g2p_rescore.sh --no-train            # choose and score runs that trained already
#   bench/g2p_rescore.sh --smoke               # tiny models and 60 words: checks the script
set -uo pipefail

smoke=0 train=1
while [ $# -gt 0 ]; do
  case $1 in
    --smoke) smoke=1; shift ;;
    --no-train) train=0; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "g2p_rescore.sh: unknown option $1 (--no-train, --smoke)" >&2; exit 2 ;;
  esac
done
. "$(dirname "$0")/common.sh" runs/g2p-rescore
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
l2r=${L2R:-$runs/l2r} r2l=${R2L:-$runs/r2l}

mapfile -t weights < <(printf '%s\n' ${WEIGHTS:-0.25 0.5 0.75 1 1.5 2} | sort -g)  # ascending
budget=() write=(--write)
[ -n "${MINUTES:-}" ] && budget=("train.max_minutes=$MINUTES")
[ $smoke = 1 ] && write=()
quality() {  # NAME [OVERRIDES...] OPTIONS...: bench/quality.py g2p, its row logged
  local name=$1; shift
  "$py" bench/quality.py g2p ${tiny[@]+"${tiny[@]}"} "$@" ${limit[@]+"${limit[@]}"} > "$out/$name.log" 2>&1
  log "$name: $(grep -h '^| g2p' "$out/$name.log" || echo "failed (see $out/$name.log)")"
}

log "machine: $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1), $OMP_NUM_THREADS thread(s) per job"
if [ $train = 1 ]; then
  log "training $l2r and $r2l side by side"
  quality train-l2r ${budget[@]+"${budget[@]}"} --out "$l2r" --split valid --json-out "$runs/l2r.valid.json" &
  quality train-r2l tokenizer.reverse_target=true ${budget[@]+"${budget[@]}"} --out "$r2l" --split valid \
    --json-out "$runs/r2l.valid.json" &
  wait
fi

for ((i = 0; i < ${#weights[@]}; i += 2)); do  # two at a time, each into its own ensemble folder
  for w in "${weights[@]:i:2}"; do
    quality "valid-w$w" "search.rescore_weight=$w" --out "$l2r" --no-train --rescore "$r2l" --split valid \
      --ensemble-dir "$runs/rescored-w$w" --json-out "$runs/w$w.valid.json" &
  done
  wait
done
best=$(by_wer "${weights[@]/#/w}" | sed -n 1p)  # ties: the earlier, so the smaller weight
best=${best#w}
[ -n "$best" ] || { log "no weight scored; stopping"; exit 1; }
log "chosen on validation: rescore_weight $best"

# one after the other: each adds its row to bench/RESULTS.md
quality test-l2r --out "$l2r" --no-train --json-out "$runs/test-l2r.json" ${write[@]+"${write[@]}"}
quality test-rescored "search.rescore_weight=$best" --out "$l2r" --no-train --rescore "$r2l" \
  --ensemble-dir "$runs/rescored" --json-out "$runs/test-rescored.json" ${write[@]+"${write[@]}"}
log "done in $(( $(date +%s) - start )) s"
