#!/usr/bin/env bash
# Prepared GPU check (issue 15): PyTorch eager vs torch.compile, FP16/BF16, batch 1 and 16, CUDA events, peak memory,
# for student_xs and student_s, next to the roofline estimate of the GPU's hardware profile; then (issue 27) the
# calibration row: the published tables' models + the students at batch 1 FP16, measured, written into gpu_check.json
# as a `calibration_table` for `emodistill calibrate --table gpu_check.json` (that GPU is then
# predicted from the published tables only, never fitted on). About 6-10 minutes.
#   scripts/gpu_check.sh                          # profile from the GPU's name; writes gpu_check.json
#   scripts/gpu_check.sh --profile h200-sxm --runs 50
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu_check: no CUDA GPU visible (nvidia-smi?)')"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv || true
python -m emodistill.app.cli gpu-check --json-out gpu_check.json --calibration "$@"
# the leave-one-GPU-out table with this GPU's measured row (CPU work: counts every model)
exec python -m emodistill.app.cli calibrate --table gpu_check.json --no-rows
