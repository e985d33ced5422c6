#!/usr/bin/env bash
# The GPU speed comparison of issue 15 in one go (well under 8 minutes on one GPU; no network,
# no data: this repository with `pip install -e .` done):
#   1. training tokens/s, fused whole-sequence path vs step loop, fp32 vs bf16 autocast, batch 64
#      and 256 sentences (bench/bench_models.py: emb 256, 2x512 biLSTM encoder, 2x512 LSTM
#      decoder, vocabulary 8000; fused/loop ratio printed, >= 3x expected on a GPU);
#   2. inference greedy / beam 5 at batch 1 and 64, fp32 and bf16 (bench/speed.py --part
#      synthetic: an untrained model of the same size, exactly 16 output pieces a sentence).
# Results go to $OUT (if set; else runs/gpu-bench): machine.txt, train.txt, infer.md.
#
#   bench/gpu.sh                          # on the GPU machine
#   bench/gpu.sh --device cpu --smoke     # tiny sizes on a CPU: checks the script (about a minute)
set -euo pipefail

device=cuda smoke=0 threads=""
while [ $# -gt 0 ]; do
  case $1 in
    --device) device=${2:?--device needs a value}; shift 2 ;;
    --smoke) smoke=1; shift ;;
    --threads) threads=${2:?--threads needs a value}; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "gpu.sh: unknown option $1 (--device D, --smoke, --threads N)" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/.."
out=${OUT:-runs/gpu-bench}
mkdir -p "$out"
py=${PYTHON:-python3}
[ "$device" = cpu ] && threads=${threads:-1}
thread_args=()
[ -n "$threads" ] && thread_args=(--threads "$threads")
start=$(date +%s)

{
  date -u +"%Y-%m-%dT%H:%M:%SZ"
  git rev-parse --short HEAD 2>/dev/null || true
  "$py" -c "import torch, transduce; print('torch', torch.__version__, 'transduce', transduce.__version__); \
print('cuda', torch.cuda.is_available() and torch.cuda.get_device_name(0))"
  if [ "$device" != cpu ]; then nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true; fi
} 2>&1 | tee "$out/machine.txt"

if [ $smoke = 1 ]; then
  train_args=(--quick --reps 1)
  infer_args=(--smoke --alternations 1)
else
  train_args=(--batches 64 256 --precisions fp32 bf16 --reps 5)
  infer_args=(--alternations 3)
fi

echo "== training: fused vs loop, fp32 vs bf16 ($device)"
timeout 300 "$py" bench/bench_models.py --device "$device" "${train_args[@]}" ${thread_args[@]+"${thread_args[@]}"} \
  | tee "$out/train.txt"

echo "== inference: greedy / beam 5 at batch 1 and 64 ($device)"
timeout 180 "$py" bench/speed.py --part synthetic --device "$device" --synthetic-batches 1 64 \
  --precisions fp32 bf16 "${infer_args[@]}" ${thread_args[@]+"${thread_args[@]}"} | tee "$out/infer.md"

echo "gpu.sh: done in $(( $(date +%s) - start )) s; results in $out"
