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
# --bidirectional, on its own (a fresh machine will do): trains three Bahdanau members left to
# right (seeds 1-3) and three right to left (tokenizer.reverse_target=true, seeds 1-3) side by
# side for $MINUTES minutes each (default 5), scores on validation the left-to-right ensemble
# alone and re-ranked by the three right-to-left members (transduce ensemble --rescore) with
# search.rescore_weight 0.5, 1 and 1.5, and the test split of the one chosen there and of the
# ensemble alone.
# Nothing is chosen on the test split. Members and scores go to runs/g2p-gpu; logs and the
# summary to $OUT (if set; else runs/g2p-gpu/out).
#
#   bench/g2p_gpu.sh                  # on the GPU machine (the repository with its requirements)
#   bench/g2p_gpu.sh --more-bahdanau  # then this, on the same machine
#   bench/g2p_gpu.sh --bidirectional  # left-to-right members re-ranked by right-to-left ones
#   bench/g2p_gpu.sh --no-train [...] # the same on members trained before (runs/g2p-gpu):
#                                     # after a scoring failed, without retraining them
#   bench/g2p_gpu.sh --smoke [...]    # tiny models and 60 words on any device: checks the script
set -uo pipefail

smoke=0 mode=first train=1
while [ $# -gt 0 ]; do
  case $1 in
    --smoke) smoke=1; shift ;;
    --more-bahdanau) mode=more; shift ;;
    --bidirectional) mode=bidirectional; shift ;;
    --no-train) train=0; shift ;;
    -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
    *) echo "g2p_gpu.sh: unknown option $1 (--more-bahdanau, --bidirectional, --no-train, --smoke)" >&2; exit 2 ;;
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
  [r2l]="model.family=bahdanau tokenizer.reverse_target=true"
  [r2l2]="model.family=bahdanau tokenizer.reverse_target=true train.seed=2"
  [r2l3]="model.family=bahdanau tokenizer.reverse_target=true train.seed=3"
)
score=(search.batch_size=256)
logs=$runs/logs
mkdir -p "$logs"
keep_logs() { tar czf "$out/logs.tar.gz" -C "$runs" logs; }  # one file: $OUT brings back few

train_members() {  # MINUTES NAME...: train side by side, each scored on validation
  local minutes=$1 n; shift
  if [ $train = 0 ]; then  # their validation scores stand; a member without one stops the run
    for n in "$@"; do
      [ -f "$runs/$n.valid.json" ] || { log "--no-train: $runs/$n.valid.json missing (train it first)"; exit 1; }
    done
    log "--no-train: $* as trained before"
    return
  fi
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

declare -A ensemble=()  # TAG -> MEMBER,... or MEMBER,.../RESCORER,...@WEIGHT
qargs=()
model_args() {  # TAG: qargs = quality.py's arguments that score ${ensemble[TAG]}
  local spec=${ensemble[$1]} names rescorers=() others=() m n
  IFS=, read -ra names <<< "${spec%%/*}"
  for m in "${names[@]:1}"; do others+=("$runs/$m"); done
  qargs=("${score[@]}")
  if [[ $spec == */* ]]; then
    qargs+=("search.rescore_weight=${spec##*@}")
    IFS=, read -ra m <<< "${spec#*/}"; m[-1]=${m[-1]%@*}
    for n in "${m[@]}"; do rescorers+=("$runs/$n"); done
  fi
  qargs+=(--out "$runs/${names[0]}" --no-train ${limit[@]+"${limit[@]}"})
  [ ${#names[@]} -gt 1 ] || [ ${#rescorers[@]} -gt 0 ] && qargs+=(--ensemble-dir "$runs/ens-$1")
  [ ${#others[@]} -gt 0 ] && qargs+=(--ensemble "${others[@]}")
  [ ${#rescorers[@]} -gt 0 ] && qargs+=(--rescore "${rescorers[@]}")
}

score_ensembles() {  # TAG=SPEC ...: each one's validation score, side by side
  local spec tag
  for spec in "$@"; do
    tag=${spec%%=*}; ensemble[$tag]=${spec#*=}
    model_args "$tag"
    "$py" bench/quality.py g2p "${qargs[@]}" --split valid --json-out "$runs/$tag.valid.json" \
      > "$logs/ensemble-$tag.log" 2>&1 &
  done
  wait
  for spec in "$@"; do
    tag=${spec%%=*}
    log "$tag (${ensemble[$tag]}): $(grep -h '^| g2p' "$logs/ensemble-$tag.log" || echo "failed")"
  done
  keep_logs
}

write=()  # the test rows go into bench/RESULTS.md (quality.py --write), not for smoke runs
[ $smoke = 0 ] && write=(--write)
score_test() {  # TAG: the test split of that model, ensemble or re-ranked one
  [ -n "${ensemble[$1]+set}" ] || ensemble[$1]=$1  # a member alone
  model_args "$1"
  "$py" bench/quality.py g2p "${qargs[@]}" --json-out "$runs/test-$1.json" ${write[@]+"${write[@]}"} \
    > "$logs/test-$1.log" 2>&1
  grep -h '^| g2p' "$logs/test-$1.log"
}

log "machine: $("$py" -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')" 2>&1)"
if [ $mode = first ]; then
  train_members "${MINUTES:-5}" s1 s2 s3 deep1 deep2 bahdanau
  mapfile -t ranked < <(by_wer s1 s2 s3 deep1 deep2 bahdanau)
  log "ranked by validation WER: ${ranked[*]}"
  specs=()  # the best k, the k-th first (its config and data; as in the round on record)
  for ((k = 2; k <= ${#ranked[@]}; k++)); do
    specs+=("top$k=$(IFS=,; echo "${ranked[k-1]},${ranked[*]:0:k-1}")")
  done
  score_ensembles "${specs[@]}"
  tags=("${specs[@]%%=*}")
elif [ $mode = more ]; then
  train_members "${MINUTES:-4}" bahdanau2 bahdanau3
  score_ensembles b123=bahdanau3,bahdanau,bahdanau2 b123s1=s1,bahdanau,bahdanau2,bahdanau3 \
    b123s13=s3,bahdanau,bahdanau2,bahdanau3,s1 b12s1=bahdanau2,bahdanau,s1
  tags=(b123 b123s1 b123s13 b12s1)
else
  train_members "${MINUTES:-5}" bahdanau bahdanau2 bahdanau3 r2l r2l2 r2l3
  specs=(l2r=bahdanau,bahdanau2,bahdanau3)
  for w in 0.5 1 1.5; do specs+=("l2r-r2l-w$w=bahdanau,bahdanau2,bahdanau3/r2l,r2l2,r2l3@$w"); done
  score_ensembles "${specs[@]}"
  tags=("${specs[@]%%=*}")
fi
best=$(by_wer "${tags[@]}" | sed -n 1p)  # sed reads all: no broken pipe
[ -n "$best" ] || { log "no ensemble scored; stopping"; keep_logs; exit 1; }
log "chosen on validation: $best (${ensemble[$best]})"
rows=("$(score_test "$best")")
[ $mode = first ] && rows+=("$(score_test s1)")
[ $mode = bidirectional ] && [ "$best" != l2r ] && rows+=("$(score_test l2r)")
for row in "${rows[@]}"; do log "test: $row"; done
[ $smoke = 0 ] && cp bench/RESULTS.md "$out/RESULTS.md"
keep_logs
log "done in $(( $(date +%s) - start )) s"
