#!/usr/bin/env bash
# bench.gpu on a bare CUDA host that has Python 3.12 with torch (and transformers' own
# dependencies) but none of llmux's, and no network — the device machine this project's
# sessions are sometimes lent (an H200; see the README's benchmark section).
#
#   bench/gpu_device.sh fetch   # here, where PyPI answers: the missing wheels into .whl/ (~15 MB)
#   bench/gpu_device.sh run     # there, with .whl carried: install into /tmp/site, run, table in $OUT
#
# Chatterbox is left out on purpose: its watermarker (resemble-perth, 34 MB) and PyAV (36 MB)
# alone exceed what one call may carry (64 MiB), so the bench's chatterbox row says "not
# installed". llama-cpp-python has no CUDA wheel on PyPI, so its row says so too.
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS=(
  msgspec==0.23.0 structlog==26.1.0 python-statemachine==3.2.2 json_repair==0.64.6
  gguf==0.19.0 transformers==5.24.0
)

case "${1:-run}" in
fetch)
  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform any -d .whl "${WHEELS[@]}"
  du -sh .whl
  ;;
run)
  out="${OUT:-$PWD/.bench-out}"
  mkdir -p "$out"
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$out/gpu.txt" || true
  df -h /tmp >>"$out/gpu.txt"
  python3 -m bench.gpu --out "$out/gpu-table.txt" 2>&1 | tee "$out/gpu-log.txt"
  ;;
*)
  echo "usage: $0 fetch|run" >&2
  exit 2
  ;;
esac
