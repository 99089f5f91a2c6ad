#!/usr/bin/env bash
# One command on a GPU machine (< 10 min): the 90 M SONAR run's clips/s, model FLOP utilisation and
# data-wait share on one GPU (benchmarks/gpu_check.py). Needs the project installed (`make setup GPU=1`,
# or PYTHON= an interpreter with torch+CUDA and the project's requirements). Extra flags go to
# gpu_check.py, e.g. `--batch-size 64`. Figures: the RESULT lines, and gpu_check.json in $OUT (or here).
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
PY=${PYTHON:-$(if [ -x .venv/bin/python ]; then echo .venv/bin/python; else echo python3; fi)}
"$PY" -c "import torch, ray; assert torch.cuda.is_available(), 'torch sees no GPU'; print('torch', torch.__version__, '| ray', ray.__version__)"
export TQDM_DISABLE=1 PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
timeout 570 "$PY" benchmarks/gpu_check.py --out "${OUT:-.}/gpu_check.json" "$@"
