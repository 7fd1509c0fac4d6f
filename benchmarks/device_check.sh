#!/usr/bin/env bash
# The prepared GPU check for a session that is lent an accelerator (CI never runs it):
# the CUDA agreement tests of the plain-PyTorch point ops, then one bf16 and one fp32 training-step
# throughput/memory measurement per installed modality. JSON lines go to $OUT (or benchmarks/results).
# Needs the project installed in the Python it runs (e.g. pip install -e core -e cli -e plugins/*).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
DEST=${OUT:-benchmarks/results}
mkdir -p "$DEST"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" -m pytest plugins/pointcloud/tests/test_pc_ops.py -q -o addopts="" -p no:dash -k cuda
for modality in $("$PY" -c "import mpt; print(' '.join(mpt.list_modalities()))"); do
  "$PY" benchmarks/pretrain_throughput.py --modality "$modality" --device cuda --precision bf16,no \
    --steps 20 --warmup 5
done | tee "$DEST/gpu-$(date +%F).jsonl"
