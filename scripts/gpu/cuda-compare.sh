#!/usr/bin/env bash
# On the GPU machine, after `. .device/setup.sh`: our engine on cuda beside the peers, one machine,
# one go. Results to $OUT (ours-*.log / peer-*.log / compiled-*.log hold 'RESULT {json}' lines).
#   bash scripts/gpu/cuda-compare.sh [parity[-bf16][-text]] [diag] [bisect] [conformance] [SHAPE] [int4:SHAPE] [bf16:SHAPE]
#        [nograph:SHAPE] [compiled:SHAPE] [batchpeer:SHAPE] [peers:SHAPE] [webgpu:SHAPE]
# SHAPE: qwen2.5-0.5b | llama3-8b (hf_peer.py make); peers = compiled + bench (eager, generate_batch);
# batchpeer = bench alone; webgpu = our engine on --device webgpu (scripts/gpu/bench.mjs; carry
# .device/gl for the Vulkan loader). parity covers the text fixtures (executor and engine) and the VLM fixtures
# (towers on cuda); conformance runs the engine conformance suite on cuda.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export SWITCHYARD_CACHE_DIR=/tmp/switchyard-cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$OUT/gpu.txt"
make_model() { [ -f "/tmp/models/$1/prompts.json" ] || python3 .gpu/hf_peer.py make "$1" "/tmp/models/$1" .gpu/fixtures/qwen2-tiny 2>&1 | tail -1; }
for what in "$@"; do
  case "$what" in
    parity|parity-bf16|parity-text|parity-bf16-text)
      d=$(case "$what" in *bf16*) echo bfloat16 ;; *) echo float16 ;; esac)
      v=$(case "$what" in *-text) echo 0 ;; *) echo 1 ;; esac)
      DTYPE=$d VLM=$v node scripts/gpu/cuda-parity.mjs .gpu/fixtures 256 > "$OUT/cuda-$what.json" 2> "$OUT/cuda-$what.err"
      echo "rc=$?"; tail -4 "$OUT/cuda-$what.err" ;;
    diag)
      for op in MatMul Conv Identity Gelu LayerNorm Softmax Gemm Expand; do
        OP=$op node scripts/gpu/cuda-diag-ops.mjs > /dev/null 2>&1; echo "op $op rc=$?"
      done 2>&1 | tee "$OUT/cuda-diag.txt"
      for f in llava-tiny internvl-tiny; do
        SKIP_EXECUTOR=1 LOG=0 node scripts/gpu/cuda-diag-vision.mjs .gpu/fixtures/$f > "$OUT/cuda-diag-$f.log" 2>&1; echo "tower $f rc=$?" | tee -a "$OUT/cuda-diag.txt"
      done ;;
    bisect)
      # The first tower node whose run crashes the CUDA provider (decision 0008's addendum).
      for f in llava-tiny internvl-tiny; do
        node scripts/gpu/cuda-bisect-tower.mjs .gpu/fixtures/$f basic > "$OUT/cuda-bisect-$f.json" 2>&1
        grep -A3 '"first_crash"' "$OUT/cuda-bisect-$f.json" | head -4
      done ;;
    conformance)
      # vitest travels apart (.device/testtools.tar.xz from prepare.sh; carry it with this call).
      [ -f .device/testtools.tar.xz ] && tar -xJf .device/testtools.tar.xz
      (cd packages/server && SWITCHYARD_FIXTURES=$PWD/../../.gpu/fixtures SWITCHYARD_TEST_DEVICE=cuda \
        node ../../node_modules/vitest/vitest.mjs run src/engine-conformance.test.ts 2>&1 | tee "$OUT/cuda-conformance.log" | tail -8) ;;
    int4:*|nograph:*|bf16:*)
      m=${what#*:}; make_model "$m"
      case "${what%%:*}" in int4) e=QUANT=int4 ;; bf16) e=DTYPE=bfloat16 ;; *) e=GRAPH=0 ;; esac
      env $e node scripts/gpu/cuda-bench.mjs "/tmp/models/$m" all 2>&1 \
        | tee "$OUT/ours-${what%%:*}-$m.log" | grep -E 'RESULT|PHASE|Error|rror:'; echo "exit ${PIPESTATUS[0]} ($what)" ;;
    webgpu:*)
      m=${what#*:}; make_model "$m"
      node scripts/gpu/bench.mjs "/tmp/models/$m" all 2>&1 | tee "$OUT/ours-webgpu-$m.log" | grep -E 'RESULT|rror' ;;
    compiled:*)
      m=${what#*:}; make_model "$m"
      python3 .gpu/hf_peer.py compiled "/tmp/models/$m" 2>&1 | tee "$OUT/compiled-$m.log" | grep RESULT ;;
    batchpeer:*)
      m=${what#*:}; make_model "$m"
      python3 .gpu/hf_peer.py bench "/tmp/models/$m" 2>&1 | tee "$OUT/peer-$m.log" | grep RESULT ;;
    peers:*)
      m=${what#*:}; make_model "$m"
      python3 .gpu/hf_peer.py compiled "/tmp/models/$m" 2>&1 | tee "$OUT/compiled-$m.log" | grep RESULT
      python3 .gpu/hf_peer.py bench "/tmp/models/$m" 2>&1 | tee "$OUT/peer-$m.log" | grep RESULT ;;
    *)
      make_model "$what"
      node scripts/gpu/cuda-bench.mjs "/tmp/models/$what" all 2>&1 | tee "$OUT/ours-$what.log" | grep -E 'RESULT|PHASE|Error|rror:'; echo "exit ${PIPESTATUS[0]} ($what)" ;;
  esac
done
