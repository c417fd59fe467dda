#!/usr/bin/env bash
# On the GPU machine, after `. .device/setup.sh`: one whole side-by-side run. Results go to $OUT.
#   bash scripts/gpu/compare.sh [parity] [qwen2.5-0.5b] [llama3-8b] ...
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export SWITCHYARD_CACHE_DIR=/tmp/switchyard-cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
for what in "$@"; do
  case "$what" in
    parity)
      node scripts/gpu/parity.mjs .gpu/fixtures > "$OUT/parity.json" 2> "$OUT/parity.err"; tail -3 "$OUT/parity.err" ;;
    *)
      dir=/tmp/models/$what
      [ -f "$dir/prompts.json" ] || python3 .gpu/hf_peer.py make "$what" "$dir" .gpu/fixtures/qwen2-tiny 2>&1 | tail -1
      node scripts/gpu/bench.mjs "$dir" all 2>&1 | tee "$OUT/ours-$what.log" | grep RESULT
      python3 .gpu/hf_peer.py bench "$dir" 2>&1 | tee "$OUT/peer-$what.log" | grep RESULT ;;
  esac
done
