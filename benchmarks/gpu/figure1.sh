#!/usr/bin/env bash
# Figure 1 on one GPU in under 10 minutes (issue #16 item 7): experiments/gpu_figure1.py at full size.
# Renders 258,000 lv5 scenes (2,000 held out + n up to 256,000) into GPU memory with the torch engine, pre-trains a
# ResNet-18 in bf16 for the same 1,500 steps x 512 at n = 16k, 64k, 256k (and the shuffled-label control at 256k),
# fine-tunes Fashion-MNIST at s = 600 and 6,000 with 3 seeds (lr chosen on 1,000 validation images), writes
# results.csv, report.md, figure.png and log.txt, and prints the table and the report.
#
# Fashion-MNIST must travel with the working tree (that machine has no network and no Debian package). Once, here:
#     mkdir -p runs/fashion-mnist && cp /usr/share/datasets/fashion-mnist/*.gz runs/fashion-mnist/
# (runs/ is git-ignored; the four files are 30 MB of the 64 MiB a call may carry). Then, with the device tool:
#     run(command="bash benchmarks/gpu/figure1.sh", carry=["runs/fashion-mnist"], timeout_s=600)
# Output goes to $OUT there (or to the folder given as the first argument, default runs/gpu_figure1); arguments
# after it go to the recipe (python -m experiments.gpu_figure1 --help), e.g. `... figure1.sh "$OUT" --no-control`.
# Nothing else needs installing: the recipe imports torch, timm, numpy, pandas, pillow, pyyaml and matplotlib only.
#
# Budget, estimated (not yet measured on the machine): render ~30-60 s (15 CPU workers sample and prepare scenes, the
# GPU renders and downsamples), pre-training 12 runs x 768k images at 30-50k img/s ~ 3-5 min, fine-tuning 30 arms x
# 3 rates x 300 steps at ~4-6 ms a step ~ 2 min, after a ~20 s smoke run at toy size. The recipe rewrites its
# outputs after every seed, and `timeout` stops it at BUDGET_S (540 s), so a slow machine returns the seeds it finished.
set -uo pipefail
DEST=${1:-${OUT:-runs/gpu_figure1}}
shift || true
PYTHON=${PYTHON:-python3}
FASHION=${FASHION_DIR:-runs/fashion-mnist}
if [ -d "$FASHION" ]; then export LAB_FASHION_MNIST_DIR=$FASHION; fi
export PYTHONUNBUFFERED=1
mkdir -p "$DEST"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PYTHON" -c "import torch, timm; print('torch', torch.__version__, torch.version.cuda, 'timm', timm.__version__)"
DEVICE=${DEVICE:-cuda}  # DEVICE=cpu with `--toy` after the folder checks this script on a laptop
# The shuffled-label control arm, where this checkout registers it.
CONTROL=$("$PYTHON" -c "from lab.tasks.pretrain import PRETRAIN_TASKS as tasks
print('--control' if 'multilabel_shuffled' in tasks else '')")

echo "== smoke run: the whole recipe at toy size on the GPU, with 2 scene workers (a CUDA-only error costs seconds)"
if ! "$PYTHON" -m experiments.gpu_figure1 --out /tmp/gpu_figure1_smoke --device "$DEVICE" --toy --workers 2 $CONTROL \
        >/tmp/gpu_figure1_smoke.log 2>&1; then
    tail -n 40 /tmp/gpu_figure1_smoke.log
    exit 1
fi

echo "== the study"
timeout -k 10 "${BUDGET_S:-540}" "$PYTHON" -m experiments.gpu_figure1 --out "$DEST" --device "$DEVICE" $CONTROL "$@" \
    2>&1 | tee "$DEST/log.txt"
status=${PIPESTATUS[0]}
if [ "$status" -ne 0 ]; then
    echo "gpu_figure1 stopped with status $status (124: the time budget); the seeds it finished:"
    cat "$DEST/report.md" 2>/dev/null || echo "(no report written)"
fi
exit "$status"
