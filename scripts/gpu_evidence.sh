#!/usr/bin/env bash
# The privacy-utility frontier at 224/256 px on one GPU (issues 10 and 11), in calls of at most 9 minutes.
#
#   bash scripts/gpu_evidence.sh SHARED_DATA_DIR WORK_DIR [kermany|nih ...]
#
# Runs configs/benchmark_kermany_gpu224.json on kermany-pediatric-cxr and configs/benchmark_gpu256.json on
# nih-cxr14-subset (both by default, Kermany first). Every training stage and every evaluated row is written
# as soon as it is done and skipped on the next call, so the same command is simply called again until it
# prints "all done"; each call stops itself after CALL_SECONDS (default 510 s, leaving start-up and transfer
# inside a 9-minute call). Environment: DEVICE (default cuda), CALL_SECONDS, BENCH_SET (extra --set items; a
# smoke test on the CPU uses them to shrink epochs and sizes).
set -uo pipefail
DATA=${1:?shared data dir (holding kermany-pediatric-cxr/ and nih-cxr14-subset/)}; WORK=${2:?work dir}; shift 2
SETS=${*:-kermany nih}
DEVICE=${DEVICE:-cuda}
CALL_SECONDS=${CALL_SECONDS:-510}
read -r -a SET_EXTRA <<< "${BENCH_SET:-}"
deadline=$(( $(date +%s) + CALL_SECONDS ))
stamp() { echo "[gpu_evidence $(date +%H:%M:%S)] $*"; }
mkdir -p "$WORK"
for name in $SETS; do
  case "$name" in
    kermany) config=configs/benchmark_kermany_gpu224.json; dir="$DATA/kermany-pediatric-cxr" ;;
    nih) config=configs/benchmark_gpu256.json; dir="$DATA/nih-cxr14-subset" ;;
    *) echo "unknown data set $name (kermany or nih)"; exit 2 ;;
  esac
  if [ -f "$WORK/$name/benchmark.json" ]; then stamp "$name: done before"; continue; fi
  left=$(( deadline - $(date +%s) ))
  if [ "$left" -le 30 ]; then stamp "time is up for this call: call again"; exit 3; fi
  stamp "$name: $config for at most ${left}s"
  timeout --signal=INT "$left" monai-prichexy benchmark --config "$config" --dataset-dir "$dir" \
      --output_dir "$WORK/$name" --set device="$DEVICE" progress=false "${SET_EXTRA[@]}"
  status=$?
  if [ "$status" -eq 124 ] || [ "$status" -eq 130 ]; then stamp "$name: stopped at the call's limit: call again"; exit 3; fi
  if [ "$status" -ne 0 ]; then stamp "$name: failed ($status)"; exit "$status"; fi
done
stamp "all done"
