#!/bin/bash
# The one prepared check for a CUDA machine that has PyTorch but no package index (issue 10):
# installs the carried wheels, then runs benchmarks/run.py with the sweeps and torch.compile,
# writing gpu.json (rewritten after each section), the timed sweeps' results.parquet and a log
# into $OUT. Here, once: `bash ../shared/tools/gpu-wheels.sh` (builds .whl/); there, with .whl
# carried: `OUT=folder bash benchmarks/gpu.sh`. Each step is bounded so a slow one cannot eat
# the rest; ~8 min on one H100.
set -u
OUT=${OUT:-$(mktemp -d)}
export PYTHONUNBUFFERED=1
log=$OUT/log.txt
S=$(mktemp -d)
python3 -m pip install -q --no-index --no-deps --no-compile --target "$S" .whl/*.whl 2>&1 | tail -3 | tee "$log"
export PYTHONPATH="$S:$PWD"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  echo "cpus: $(nproc)"
  python3 -c "import torch, ray, optuna, sklearn; print('torch', torch.__version__, 'ray', ray.__version__, 'optuna', optuna.__version__, 'sklearn', sklearn.__version__)"
} 2>&1 | tee -a "$log"
timeout "${BENCH_TIMEOUT:-500}" python3 benchmarks/run.py --json "$OUT/gpu.json" --sweep --paper-scale --compile \
  --keep-results "$OUT" 2>&1 | tee -a "$log"
echo "benchmark exit: ${PIPESTATUS[0]}" | tee -a "$log"
