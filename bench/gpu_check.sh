#!/usr/bin/env bash
# Issue 13's device run, as one command (a device run has 15 minutes in all; this takes about 8):
#
#   bench/gpu_check.sh            # on the GPU machine: everything, written to $OUT/gpu-check.md
#   QUICK=1 bench/gpu_check.sh    # on a CPU: the same steps, small (how it is tried before a device run)
#
# It needs .venv and the converted models: `make models` builds both where the package registries
# are reachable; on a machine that reaches none, carry .venv and build/models.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-build/gpu-check}
mkdir -p "$OUT"
[ -f build/models/.converted ] || make models
export MUSICNN_BEAM_MODELS=${MUSICNN_BEAM_MODELS:-$PWD/build/models}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/nvidia-smi.csv" 2>&1 || true
PYTHONUNBUFFERED=1 .venv/bin/python -m bench.gpu_check ${QUICK:+--quick} --out "$OUT/gpu-check.md" 2>&1 | tee "$OUT/gpu-check.log"
