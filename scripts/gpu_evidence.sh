#!/usr/bin/env bash
# Issue 5's GPU runs in one go (about 10 minutes on one H100/H200):
#  1. the bundle's own train config, CPU profile (train.json + train_cpu64.json, 64 px on images64/),
#     on the GPU, for every mu given: classifier and verifier once, then generator pre-training and
#     adversarial training per mu -> <work>/b64/models/model_mu<mu>.pt;
#  2. each of those models evaluated with the CPU profile's attacker and classifier beside the real
#     images and a random deformation of the same mean displacement (scripts/benchmark.py --model);
#  3. the 256-px benchmark (configs/benchmark_gpu256.json).
# Usage: bash scripts/gpu_evidence.sh DATASET_DIR WORK_DIR [MU ...]
# Environment: DEVICE (default cuda); BUNDLE_ARGS and BENCH_SET add bundle overrides / benchmark
# --set items (a smoke test on the CPU uses them to shrink the epochs).
set -uo pipefail
DATA=${1:?dataset dir}; WORK=${2:?work dir}; shift 2
MUS=${*:-0.01 0.03 0.1}
DEVICE=${DEVICE:-cuda}
read -r -a BUNDLE_EXTRA <<< "${BUNDLE_ARGS:-}"
read -r -a SET_EXTRA <<< "${BENCH_SET:-}"
mkdir -p "$WORK"
B64="['bundle/configs/train.json','bundle/configs/train_cpu64.json']"
bundle=(--config_file "$B64" --dataset_dir "$DATA" --device "$DEVICE" --output_dir "$WORK/b64" --progress False "${BUNDLE_EXTRA[@]}")
stamp() { echo "[gpu_evidence $(date +%H:%M:%S)] $*"; }

stamp "bundle 64 px: classifier and verifier"
python -m monai.bundle run run_classifier_pretrain "${bundle[@]}" || exit 1
python -m monai.bundle run run_verifier_pretrain "${bundle[@]}" || exit 1
models=()
for mu in $MUS; do
  stamp "bundle 64 px: mu=$mu"
  python -m monai.bundle run run_generator_pretrain "${bundle[@]}" --mu "$mu" || exit 1
  python -m monai.bundle run run_adversarial "${bundle[@]}" --mu "$mu" --model_path "$WORK/b64/models/model_mu$mu.pt" || exit 1
  models+=("$WORK/b64/models/model_mu$mu.pt")
done
stamp "evaluating the 64-px bundle models"
python scripts/benchmark.py --config configs/benchmark_cpu.json --dataset_dir "$DATA" --output_dir "$WORK/eval64" \
  --set device="$DEVICE" progress=false "${SET_EXTRA[@]}" --model "${models[@]}" || exit 1
stamp "256-px benchmark"
python scripts/benchmark.py --config configs/benchmark_gpu256.json --dataset_dir "$DATA" --output_dir "$WORK/bench256" \
  --set device="$DEVICE" progress=false "${SET_EXTRA[@]}" || exit 1
stamp "done"
