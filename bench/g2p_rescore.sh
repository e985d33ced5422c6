#!/usr/bin/env bash
# The g2p recipe re-ranked by right-to-left models (issue 14):
#   1. trains the `g2p` recipe (left to right, L2R) and the same recipe with
#      tokenizer.reverse_target=true (right to left, R2L) side by side, one thread each, for
#      at most $MINUTES minutes each (default: none, the recipe's 14,000 steps), both with the
#      recipe overrides in $OVERRIDES (e.g. model.family=bahdanau; training only); each is
#      scored on the validation split;
#   2. scores the L2R beam re-ranked by the R2L models (transduce ensemble --rescore) on the
#      validation split for each beam of $BEAMS (default 5) and weight of $WEIGHTS
#      (search.rescore_weight), two at a time, and chooses the pair with the lowest
#      validation WER (ties: the smaller beam, then the smaller weight);
#   3. scores the test split once: the L2R model(s) alone (recipe beam) and re-ranked with
#      the chosen beam and weight, and adds both rows to bench/RESULTS.md.
# Nothing is chosen on the test split. Runs and scores go to $RUNS (default runs/g2p-rescore:
# $RUNS/l2r, $RUNS/r2l), logs and the summary to $OUT (default $RUNS/out). L2R=... and R2L=...
# name other run folders; with --no-train each may name several (space-separated): the L2R
# runs decode as an ensemble, the R2L runs' mean log-probability re-ranks its beam.
#
#   bench/g2p_rescore.sh                       # train both, then choose and score
#   MINUTES=140 bench/g2p_rescore.sh           # ... each under a time budget
#   bench/g2p_rescore.sh --no-train            # choose and score runs that trained already
#   bench/g2p_rescore.sh --train-only          # train both (and score each on validation) only
#   bench/g2p_rescore.sh --no-train --no-test  # choose on validation only (to compare systems
#                                              # first; then BEAMS=B WEIGHTS=W ... --no-train)
#   L2R="runs/a runs/b" R2L="runs/c runs/d" bench/g2p_rescore.sh --no-train
#   bench/g2p_rescore.sh --smoke               # tiny models and 60 words: checks the script
set -uo pipefail

smoke=0 train=1 choose=1 test=1
while [ $# -gt 0 ]; do
  case $1 in
    --smoke) smoke=1; shift ;;
    --no-train) train=0; shift ;;
    --train-only) choose=0; shift ;;
    --no-test) test=0; shift ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "g2p_rescore.sh: unknown option $1 (--no-train, --train-only, --no-test, --smoke)" >&2; exit 2 ;;
  esac
done
. "$(dirname "$0")/common.sh" runs/g2p-rescore
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
read -ra l2r <<< "${L2R:-$runs/l2r}"
read -ra r2l <<< "${R2L:-$runs/r2l}"
read -ra overrides <<< "${OVERRIDES:-}"
if [ $choose = 0 ] && { [ $train = 0 ] || [ $test = 0 ]; }; then
  echo "g2p_rescore.sh: --train-only goes with neither --no-train nor --no-test" >&2; exit 2
fi
finish() { log "done in $(( $(date +%s) - start )) s$*"; exit 0; }  # finish [" (why)"]: log the total time, exit 0
if [ $train = 1 ] && [ $(( ${#l2r[@]} + ${#r2l[@]} )) != 2 ]; then
  echo "g2p_rescore.sh: training needs one L2R and one R2L run (several only with --no-train)" >&2; exit 2
fi
members=(--out "${l2r[0]}")
[ ${#l2r[@]} -gt 1 ] && members+=(--ensemble "${l2r[@]:1}")  # the L2R ensemble alone goes to $runs/members

mapfile -t weights < <(printf '%s\n' ${WEIGHTS:-0.25 0.5 0.75 1 1.5 2} | sort -g)  # ascending
mapfile -t beams < <(printf '%s\n' ${BEAMS:-5} | sort -g)
grid=()  # b<beam>-w<weight>, ascending: ties go to the earlier
for b in "${beams[@]}"; do for w in "${weights[@]}"; do grid+=("b$b-w$w"); done; done
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
  log "training ${l2r[0]} and ${r2l[0]} side by side"
  quality train-l2r ${overrides[@]+"${overrides[@]}"} ${budget[@]+"${budget[@]}"} --out "${l2r[0]}" --split valid \
    --json-out "$runs/l2r.valid.json" &
  quality train-r2l ${overrides[@]+"${overrides[@]}"} tokenizer.reverse_target=true ${budget[@]+"${budget[@]}"} \
    --out "${r2l[0]}" --split valid --json-out "$runs/r2l.valid.json" &
  wait
fi
[ $choose = 0 ] && finish

alone=("${members[@]}")
[ ${#l2r[@]} -gt 1 ] && alone+=(--ensemble-dir "$runs/members")
quality valid-l2r "${alone[@]}" --no-train --split valid --json-out "$runs/alone.valid.json" &  # for the log
for ((i = 0; i < ${#grid[@]}; i += 2)); do  # two at a time, each into its own ensemble folder
  for name in "${grid[@]:i:2}"; do
    b=${name%%-*} w=${name#*-w}
    rm -f "$runs/$name.valid.json"  # a failed scoring leaves none (not an old one)
    quality "valid-$name" "search.beam=${b#b}" "search.rescore_weight=$w" \
      "${members[@]}" --no-train --rescore "${r2l[@]}" --split valid --ensemble-dir "$runs/rescored-$name" \
      --json-out "$runs/$name.valid.json" &
  done
  wait
done
best=$(by_wer "${grid[@]}" | sed -n 1p)  # ties: the earlier, so the smaller beam, then weight
[ -n "$best" ] || { log "no beam and weight scored; stopping"; exit 1; }
beam=${best%%-*} beam=${beam#b} weight=${best#*-w}
log "chosen on validation: beam $beam, rescore_weight $weight"
[ $test = 0 ] && finish " (--no-test: the test split not scored)"

# one after the other: each adds its row to bench/RESULTS.md
quality test-l2r "${alone[@]}" --no-train --json-out "$runs/test-l2r.json" ${write[@]+"${write[@]}"}
quality test-rescored "search.beam=$beam" "search.rescore_weight=$weight" \
  "${members[@]}" --no-train --rescore "${r2l[@]}" --ensemble-dir "$runs/rescored" \
  --json-out "$runs/test-rescored.json" ${write[@]+"${write[@]}"}
finish
