#!/usr/bin/env bash
# The g2p recipe as an ensemble, trained on one GPU in about ten minutes (issue 14):
#   1. trains six members of the `g2p` recipe side by side on the one GPU, each for at most
#      $MINUTES minutes (default 5; its cosine schedule follows the time spent when the budget
#      ends first): seeds 1, 2, 3; 3 layers, seeds 1 and 2; Bahdanau attention;
#   2. scores each on the validation split, then the ensembles of the best 2, 3, ... 6 of them
#      (ranked by validation WER), and chooses the ensemble with the lowest validation WER;
#   3. scores the test split once: the chosen ensemble and the recipe's single model (seed 1),
#      and adds their rows to bench/RESULTS.md.
# --more-bahdanau, run after that on the same runs (the first round's Bahdanau member was its
# best): trains two more Bahdanau members (seeds 2, 3) side by side for 4 minutes each, scores
# four ensembles of them with the first round's best on validation, and the test split of the
# one chosen there.
# Nothing is chosen on the test split. Members and scores go to runs/g2p-gpu; logs and the
# summary to $OUT (if set; else runs/g2p-gpu/out).
#
#   bench/g2p_gpu.sh                  # on the GPU machine (the repository with its requirements)
#   bench/g2p_gpu.sh --more-bahdanau  # then this, on the same machine
#   bench/g2p_gpu.sh --smoke [...]    # tiny models and 60 words on any device: checks the script
set -uo pipefail

smoke=0 more=0
while [ $# -gt 0 ]; do
  case $1 in
    --smoke) smoke=1; shift ;;
    --more-bahdanau) more=1; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "g2p_gpu.sh: unknown option $1 (--more-bahdanau, --smoke)" >&2; exit 2 ;;
  esac
done
. "$(dirname "$0")/common.sh" runs/g2p-gpu
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

declare -A member=(
  [s1]=""
  [s2]="train.seed=2"
  [s3]="train.seed=3"
  [deep1]="model.enc_layers=3 model.dec_layers=3"
  [deep2]="model.enc_layers=3 model.dec_layers=3 train.seed=2"
  [bahdanau]="model.family=bahdanau"
  [bahdanau2]="model.family=bahdanau train.seed=2"
  [bahdanau3]="model.family=bahdanau train.seed=3"
)
score=(search.batch_size=256)
logs=$runs/logs
mkdir -p "$logs"
keep_logs() { tar czf "$out/logs.tar.gz" -C "$runs" logs; }  # one file: $OUT brings back few

train_members() {  # MINUTES NAME...: train side by side, each scored on validation
  local minutes=$1 n; shift
  log "training $* side by side (at most $minutes minutes each)"
  for n in "$@"; do
    # shellcheck disable=SC2086
    "$py" bench/quality.py g2p ${member[$n]} "train.max_minutes=$minutes" ${tiny[@]+"${tiny[@]}"} "${score[@]}" \
      --out "$runs/$n" --split valid ${limit[@]+"${limit[@]}"} --json-out "$runs/$n.valid.json" \
      > "$logs/train-$n.log" 2>&1 &
  done
  wait
  for n in "$@"; do log "$n: $(grep -h '^| g2p' "$logs/train-$n.log" || echo "failed (see $logs/train-$n.log)")"; done
  keep_logs
}

declare -A ensemble=()
score_ensembles() {  # TAG=FIRST,OTHER,... ...: each ensemble's validation score, side by side
  local spec tag names others m
  for spec in "$@"; do
    tag=${spec%%=*}; ensemble[$tag]=${spec#*=}
    IFS=, read -ra names <<< "${ensemble[$tag]}"
    others=()
    for m in "${names[@]:1}"; do others+=("$runs/$m"); done
    # each ensemble is written into its first member's folder: no two here share a first member
    "$py" bench/quality.py g2p "${score[@]}" --out "$runs/${names[0]}" --no-train --split valid \
      ${limit[@]+"${limit[@]}"} --ensemble "${others[@]}" --json-out "$runs/$tag.valid.json" \
      > "$logs/ensemble-$tag.log" 2>&1 &
  done
  wait
  for spec in "$@"; do
    tag=${spec%%=*}
    log "$tag (${ensemble[$tag]}): $(grep -h '^| g2p' "$logs/ensemble-$tag.log" || echo "failed")"
  done
  keep_logs
}

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

write=()  # the test rows go into bench/RESULTS.md (quality.py --write), not for smoke runs
[ $smoke = 0 ] && write=(--write)
score_test() {  # NAME... : the test split of that model or ensemble (first member's folder)
  local others=() m
  for m in "${@:2}"; do others+=("$runs/$m"); done
  "$py" bench/quality.py g2p "${score[@]}" --out "$runs/$1" --no-train ${limit[@]+"${limit[@]}"} \
    ${others[@]+--ensemble "${others[@]}"} --json-out "$runs/test-$1.json" ${write[@]+"${write[@]}"} \
    > "$logs/test-$1.log" 2>&1
  grep -h '^| g2p' "$logs/test-$1.log"
}

log "machine: $("$py" -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')" 2>&1)"
if [ $more = 0 ]; then
  train_members "${MINUTES:-5}" s1 s2 s3 deep1 deep2 bahdanau
  mapfile -t ranked < <(by_wer s1 s2 s3 deep1 deep2 bahdanau)
  log "ranked by validation WER: ${ranked[*]}"
  specs=()  # the best k, written into the k-th member's folder
  for ((k = 2; k <= ${#ranked[@]}; k++)); do
    specs+=("top$k=$(IFS=,; echo "${ranked[k-1]},${ranked[*]:0:k-1}")")
  done
  score_ensembles "${specs[@]}"
  tags=("${specs[@]%%=*}")
else
  train_members "${MINUTES:-4}" bahdanau2 bahdanau3
  score_ensembles b123=bahdanau3,bahdanau,bahdanau2 b123s1=s1,bahdanau,bahdanau2,bahdanau3 \
    b123s13=s3,bahdanau,bahdanau2,bahdanau3,s1 b12s1=bahdanau2,bahdanau,s1
  tags=(b123 b123s1 b123s13 b12s1)
fi
best=$(by_wer "${tags[@]}" | sed -n 1p)  # sed reads all: no broken pipe
[ -n "$best" ] || { log "no ensemble scored; stopping"; keep_logs; exit 1; }
log "chosen on validation: $best (${ensemble[$best]})"
IFS=, read -ra chosen <<< "${ensemble[$best]}"
rows=("$(score_test "${chosen[@]}")")
[ $more = 0 ] && rows+=("$(score_test s1)")
for row in "${rows[@]}"; do log "test: $row"; done
[ $smoke = 0 ] && cp bench/RESULTS.md "$out/RESULTS.md"
keep_logs
log "done in $(( $(date +%s) - start )) s"
