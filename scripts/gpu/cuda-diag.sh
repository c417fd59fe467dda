#!/usr/bin/env bash
# On the GPU machine, after `. .device/setup.sh`: where the 0.5B bs1 step goes (ORT profile per op
# type, no CUDA graph, CUDA_LAUNCH_BLOCKING=1) and bs1 variants of the cuda path, beside the
# compiled peer. Results to $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export SWITCHYARD_CACHE_DIR=/tmp/switchyard-cache
m=${1:-qwen2.5-0.5b}; d=/tmp/models/$m
[ -f "$d/prompts.json" ] || python3 .gpu/hf_peer.py make "$m" "$d" .gpu/fixtures/qwen2-tiny 2>&1 | tail -1
CUDA_LAUNCH_BLOCKING=1 node scripts/gpu/cuda-profile.mjs "$d" 256 > "$OUT/profile-$m.json" 2> "$OUT/profile-$m.err"
tail -20 "$OUT/profile-$m.err"
for v in GRAPH=1 KV=16384 BLOCK=256 META=0 LINEAR=gemm QUANT=int4; do
  env "$v" node scripts/gpu/cuda-bench.mjs "$d" bs1 2>&1 | grep -E 'RESULT|rror' | sed "s/^/[$v] /"
done | tee "$OUT/variants-$m.log" | node -e '
  let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => { for (const l of s.split("\n").filter(Boolean)) {
    const m = l.match(/^(\[[^\]]*\]) RESULT (.*)$/); if (!m) { console.log(l.slice(0, 300)); continue; }
    const r = JSON.parse(m[2]); console.log(m[1], r.bs1_decode_tok_s.toFixed(1), "tok/s, ort", r.bs1_split.ort_run_ms_per_step.toFixed(3), "ms/step"); } });'
python3 .gpu/hf_peer.py compiled "$d" 2>&1 | grep RESULT | tee "$OUT/compiled-$m.log"
