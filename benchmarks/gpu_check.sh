#!/usr/bin/env bash
# One prepared GPU check of the training loop (under 8 minutes); results go to $OUT (default benchmarks/out/).
#
#   OUT=/some/dir bash benchmarks/gpu_check.sh
#
# Needs a Python with torch, torchvision, timm, numpy, pandas, pyarrow and tqdm (the project's venv, or a
# machine's system python3 that has them: the package itself is used from src/ via PYTHONPATH, so nothing is
# installed). Writes:
#   gpu_check.json  every measurement (benchmarks/bench_train.py gpu)
#   gpu_check.md    the same as Markdown tables, for benchmarks/RESULTS.md
#   gpu_check.log   the whole output, with nvidia-smi before and after
# Measured, in this order: for the CIFAR ResNet at 32 and ResNet-50 at 224, a training step on synthetic data
# already on the GPU (the upper bound, timed for >= 3 s) and the real path through lfa.training.train.train (packed
# uint8 data on the device), twice each, interleaved, the best of each compared (goal >= 0.9); for the CIFAR
# ResNet also one step at a time (augment_chunk_mb: 0) and with compile: reduce-overhead (CUDA graphs); the
# streamed path, the seed-style loop, and peak GPU memory; N CIFAR jobs sharing the GPU; then, within the
# time budget, the upper bound of every backbone at the paper's input sizes (the table of lfa.pipeline.estimate).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/out}"
mkdir -p "$OUT"
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
LIMIT="${GPU_CHECK_LIMIT_S:-470}"  # the whole check stays under 8 minutes; partial results are saved as it goes
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
{
  echo "== $(date -u +%FT%TZ) gpu_check on $(hostname)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || echo "nvidia-smi: none"
  "$PY" - <<'PY'
import importlib, sys
print("python", sys.version.split()[0])
for name in ("torch", "torchvision", "timm", "numpy", "pandas", "pyarrow", "tqdm"):
    try:
        print(name, importlib.import_module(name).__version__)
    except Exception as err:
        print(name, "MISSING", err)
import torch
print("cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
PY
  # GPU slots on a real GPU: two slots on one device, each process sees exactly one GPU as cuda:0
  SLOTS="$(mktemp -d)"
  for i in 1 2; do
    env -u CUDA_VISIBLE_DEVICES "$PY" -c "
import sys, time, torch
from lfa.training.gpu import detect_devices, gpu_slot
with gpu_slot(sys.argv[1], devices=0, jobs_per_device=2, job='check$i') as slot:
    print('detected', detect_devices(), 'slot', slot.index, 'visible', torch.cuda.device_count(),
          torch.cuda.get_device_name(0) if torch.cuda.is_available() else '-', flush=True)
    time.sleep(2)
" "$SLOTS" &
  done
  wait
  timeout "$LIMIT" "$PY" benchmarks/bench_train.py gpu --out "$OUT" --tmp "${TMPDIR:-/tmp}" --budget-s 240
  rc=$?
  echo "== bench_train.py gpu exit status $rc"
  nvidia-smi --query-gpu=name,memory.used,memory.total,utilization.gpu --format=csv 2>&1 || true
  exit $rc
} 2>&1 | tee "$OUT/gpu_check.log"
