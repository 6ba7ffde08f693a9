#!/usr/bin/env bash
# PLaMo ~240M training MFU on one GPU: the variants worth comparing, each in its own process (a compile crash in
# one does not stop the others). Writes one CSV per variant under ${OUT:-benchmarks/results/gpu}.
set -u
OUT=${OUT:-benchmarks/results/gpu}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
run() {  # name, then bench_plamo arguments
  local name=$1; shift
  echo "=== $name: $*"
  timeout "${VARIANT_TIMEOUT:-170}" python benchmarks/bench_plamo.py --device cuda --out "$OUT/plamo_$name.csv" "$@" \
    2>&1 | grep -v "^W[0-9]" | tail -n 8
}
run eager
run compiled --compile --no-generate --no-packed
run compiled_chunk128 --compile --set mamba_chunk_size=128 --no-generate --no-packed
run compiled_eager_scan --compile --eager-scan --no-generate --no-packed
