#!/usr/bin/env bash
# One prepared GPU check (issue: scale, "GPU, ready for when one is lent"): embeds with a
# ViT-B-32 of random weights on CUDA with bf16 autocast and runs the FAISS GPU near-duplicate
# search, each beside its CPU run; prints images/s, vectors/s and the ratios to CPU, and
# one JSON line last. Without CUDA it still runs and says so.
#
#   bash bench/gpu.sh            # from the checkout; creates .venv (make install) if missing
#   GPU_BENCH_ARGS="--n-embed 8192 --n-vectors 1000000" bash bench/gpu.sh
#
# For FAISS on the GPU, install the `gpu` extra instead of `cpu` first:
#   .venv/bin/pip uninstall -y faiss-cpu && .venv/bin/pip install -e '.[gpu]'
set -euo pipefail
cd "$(dirname "$0")/.."
test -x .venv/bin/python || make install
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null \
  || echo "nvidia-smi: no NVIDIA GPU visible"
# shellcheck disable=SC2086  # word splitting of the extra arguments is intended
exec timeout "${GPU_BENCH_TIMEOUT_S:-480}" .venv/bin/python bench/gpu.py ${GPU_BENCH_ARGS:-}
