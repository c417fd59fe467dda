#!/usr/bin/env bash
# `switchyard serve` as a user runs it, over HTTP (curl): a picture request and a text request,
# then one request per picture of IMAGES_DIR at once (their tiles share tower runs), /health and
# the vision and executor metrics. On the GPU machine after `. .device/setup.sh`; anywhere with
# DEVICE=cpu.
#   [DEVICE=cuda] [FLAGS="--quantization int4"] bash scripts/gpu/cuda-serve.sh MODEL_DIR IMAGES_DIR [PORT]
set -uo pipefail
model=$1; images=$2; port=${3:-8431}; device=${DEVICE:-cuda}
url=http://127.0.0.1:$port
log=${OUT:-/tmp}/serve-$device.log
# shellcheck disable=SC2086
node packages/server/bin/switchyard.js serve --model "$model" --device "$device" --port "$port" \
  --served-model-name m --stats-interval 0 ${FLAGS:-} > "$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null' EXIT
for _ in $(seq 1 240); do curl -sf "$url/health" > /dev/null && break; sleep 0.5; done
echo "health: $(curl -s "$url/health")"
body() { # IMAGE FILE: a chat request about IMAGE, written to FILE
  local mime; mime=$(case "$1" in *.png) echo image/png ;; *) echo image/jpeg ;; esac)
  printf '{"model":"m","max_tokens":12,"temperature":0,"messages":[{"role":"user","content":[{"type":"text","text":"What is in the picture?"},{"type":"image_url","image_url":{"url":"data:%s;base64,%s"}}]}]}' \
    "$mime" "$(base64 -w0 "$1")" > "$2"
}
# The answer's text (or the whole body when it is an error).
answer() {
  python3 -c '
import json, sys
t = sys.stdin.read()
if not t.strip(): sys.exit(print("(no reply: the connection closed)"))
b = json.loads(t); c = b.get("choices")
print(repr(c[0].get("message", c[0]).get("content", c[0].get("text"))) if c else b)'
}
ask() { curl -s "$url/v1/chat/completions" -H 'content-type: application/json' -d "@$1" | answer; }
tmp=$(mktemp -d)
files=("$images"/*.png "$images"/*.jpg)
for f in "${files[@]}"; do body "$f" "$tmp/$(basename "$f").json"; done
echo "picture: $(ask "$tmp/$(basename "${files[0]}").json")"
echo "text: $(curl -s "$url/v1/completions" -H 'content-type: application/json' \
  -d '{"model":"m","prompt":"The capital of France is","max_tokens":8,"temperature":0}' | answer)"
asks=()
for f in "$tmp"/*.json; do (ask "$f" > "$f.out") & asks+=($!); done
wait "${asks[@]}"
echo "at once, ${#files[@]} pictures:"; for f in "$tmp"/*.out; do echo "  $(cat "$f")"; done
echo "metrics:"; curl -s "$url/metrics" | grep -E '^switchyard:(vision_encoder|executor_restarts|request_success)' | head -12
rm -rf "$tmp"
if kill -0 $pid 2>/dev/null; then
  kill $pid; wait $pid 2>/dev/null
else
  wait $pid; echo "THE SERVER DIED: exit status $? (128 + signal: 139 SIGSEGV, 134 SIGABRT)"
fi
echo "server log tail:"; tail -3 "$log" | cut -c1-300
