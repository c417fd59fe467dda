#!/usr/bin/env bash
# Run here (not on the GPU machine): packs node + node_modules + dist into .device/ and copies the
# peer script and the fixtures the GPU run needs into .gpu/ (both git-ignored). Then call the device
# tool with carry [".device", ".gpu"] and a command starting `. .device/setup.sh && bash scripts/gpu/compare.sh`.
set -euo pipefail
root=$(git rev-parse --show-toplevel); cd "$root"
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
npx turbo run build --output-logs=errors-only >/dev/null
# pack.sh fails (silently here) when tracked files are missing: move the demo model and mistral-tiny
# out of the tree (to stay under 64 MiB a call) only after this script.
bash ../shared/device/pack.sh >/dev/null || {
  echo "prepare.sh: ../shared/device/pack.sh failed; are tracked files missing from the tree?" >&2
  exit 1
}
# Dev-only tools the GPU run never needs (biome alone is 100 MB): drop them from the packed tree.
xz -d -T2 -f .device/tree.tar.xz
tar --delete -f .device/tree.tar --wildcards './node_modules/@biomejs*' './node_modules/fast-check*' \
  './node_modules/openai*' './node_modules/esprima*' './node_modules/@types*' 2>/dev/null || true
xz -T2 -6 -f .device/tree.tar
# vitest and what it loads (pack.sh leaves them out), ~10 MB: `cuda-compare.sh conformance` unpacks it.
tar -cJf .device/testtools.tar.xz node_modules/{vitest,@vitest,vite,rolldown,@rolldown,lightningcss,lightningcss-linux-x64-gnu}
du -sh .device/*
rm -rf .gpu && mkdir -p .gpu/fixtures
cp ../shared/device/hf_peer.py .gpu/
for f in qwen2-tiny llama3-tiny qwen3-tiny llava-tiny internvl-tiny images; do cp -r "../shared/fixtures/$f" .gpu/fixtures/; done
# The vision fixtures travel without their reference tensors (the GPU run compares ids).
rm -f .gpu/fixtures/{llava-tiny,internvl-tiny}/*.f32.bin
du -sh .gpu
