#!/usr/bin/env bash
# A ~10-minute slice of the GPU text study (experiments/conf/experiment/paper_text_gpu.yaml) on one GPU, then the
# full study's cost from the FLOP rate the slice reached (benchmarks/text_cost.py).
#   bash benchmarks/gpu/text_slice.sh                      # on the GPU machine; results under ${OUT:-/tmp}
# The slice keeps the GPU config's model, tokenizer size, sequence lengths, batch sizes, learning-rate grid and
# evaluation, and cuts what scales the time: one arm (mixture), n = 0 and 62.5M, one seed, no extra cells,
# 600 pre-training steps (39M tokens) and 100 fine-tuning steps per learning rate, a smaller tokenizer sample.
# Its bits/char are not results (the budget is cut); its throughput is the measurement.
# On a CPU at toy size (what the tests do):
#   EXPERIMENT=paper_text_toy SLICE="launcher=debug study.seeds=[0] ~cells" bash benchmarks/gpu/text_slice.sh
set -euo pipefail
OUT=${OUT:-/tmp}
PY=${PY:-python}
EXPERIMENT=${EXPERIMENT:-paper_text_gpu}
ROOT=${ROOT:-$OUT/text_slice_runs}
NAME=${EXPERIMENT}_slice
if [ -n "${SLICE+x}" ]; then
  read -r -a slice <<< "$SLICE"
else
  slice=(launcher=debug "grid={generator.name: [mixture]}" "~cells" "study.n=[0,62500000]" "study.seeds=[0]"
         study.pretrain.steps=600 study.finetune.steps=100 study.tokenizer_synthetic_docs=10000
         study.tokenizer_real_docs=20000)
fi
if command -v nvidia-smi > /dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi
started=$(date +%s)
$PY -m experiments.cli text-study "+experiment=$EXPERIMENT" "name=$NAME" "root=$ROOT" "${slice[@]}" \
  | tee "$OUT/text_slice_report.txt" | tail -n 25
echo "slice wall: $(( $(date +%s) - started )) s"
$PY benchmarks/text_cost.py --rate-from "$ROOT/$NAME" "+experiment=$EXPERIMENT" | tee "$OUT/text_slice_cost.txt"
