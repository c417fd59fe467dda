#!/usr/bin/env bash
# On the GPU machine, after `. .device/setup.sh`: our engine on cuda beside the peers, one machine,
# one go. Results to $OUT (ours-*.log / peer-*.log / compiled-*.log hold 'RESULT {json}' lines).
#   bash scripts/gpu/cuda-compare.sh [parity] [SHAPE] [int4:SHAPE] [nograph:SHAPE] [compiled:SHAPE] [peers:SHAPE]
# SHAPE: qwen2.5-0.5b | llama3-8b (hf_peer.py make); peers = compiled + bench (eager, generate_batch)
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export SWITCHYARD_CACHE_DIR=/tmp/switchyard-cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$OUT/gpu.txt"
make_model() { [ -f "/tmp/models/$1/prompts.json" ] || python3 .gpu/hf_peer.py make "$1" "/tmp/models/$1" .gpu/fixtures/qwen2-tiny 2>&1 | tail -1; }
for what in "$@"; do
  case "$what" in
    parity)
      node scripts/gpu/cuda-parity.mjs .gpu/fixtures 128 > "$OUT/cuda-parity.json" 2> "$OUT/cuda-parity.err"; tail -5 "$OUT/cuda-parity.err" ;;
    int4:*|nograph:*)
      m=${what#*:}; make_model "$m"
      env $([ "${what%%:*}" = int4 ] && echo QUANT=int4 || echo GRAPH=0) node scripts/gpu/cuda-bench.mjs "/tmp/models/$m" all 2>&1 \
        | tee "$OUT/ours-${what%%:*}-$m.log" | grep -E 'RESULT|Error|rror:' ;;
    compiled:*)
      m=${what#*:}; make_model "$m"
      python3 .gpu/hf_peer.py compiled "/tmp/models/$m" 2>&1 | tee "$OUT/compiled-$m.log" | grep RESULT ;;
    peers:*)
      m=${what#*:}; make_model "$m"
      python3 .gpu/hf_peer.py compiled "/tmp/models/$m" 2>&1 | tee "$OUT/compiled-$m.log" | grep RESULT
      python3 .gpu/hf_peer.py bench "/tmp/models/$m" 2>&1 | tee "$OUT/peer-$m.log" | grep RESULT ;;
    *)
      make_model "$what"
      node scripts/gpu/cuda-bench.mjs "/tmp/models/$what" all 2>&1 | tee "$OUT/ours-$what.log" | grep -E 'RESULT|Error|rror:' ;;
  esac
done
