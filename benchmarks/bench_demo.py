"""Time per stage of the demo study (render, pre-train, fine-tune, fit) on this machine.

    python benchmarks/bench_demo.py                  # the full default demo in a fresh temporary root
    python benchmarks/bench_demo.py +experiment=toy  # any Hydra overrides of `lab demo`

Pre-train and fine-tune times are summed over jobs (they run `launcher.max_parallel` at a time), so the
table also gives the wall time of the whole study. Writes a CSV named by hardware and versions.
"""

from __future__ import annotations

import csv
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from experiments.digits_demo import DemoConfig, run_demo  # noqa: E402
from lab.core.config import load_config  # noqa: E402
from machine import RESULTS, cpu_name, slug  # noqa: E402


def main(overrides: list[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="bench_demo_") as root:
        config = load_config(REPO / "experiments" / "conf", "demo", DemoConfig, [f"root={root}", *overrides])
        started = time.perf_counter()
        outcome = run_demo(config)
        wall = time.perf_counter() - started
    rows = [(stage, seconds) for stage, seconds in outcome["timings"].items()] + [("wall (whole study)", wall)]
    print(f"\n{'stage':<22}{'seconds':>10}")
    for stage, seconds in rows:
        print(f"{stage:<22}{seconds:>10.1f}")
    fits = outcome["fits"]
    for s, fit in fits.items():
        print(f"s={s}: alpha {fit.params['alpha']:.3f}, C {fit.params['C']:.4f}")
    name = f"demo_{slug(cpu_name())}_{os.cpu_count()}cpu_torch{torch.__version__.split('+')[0]}.csv"
    out = RESULTS / name
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["stage", "seconds", "overrides"])
        writer.writerows([(stage, f"{seconds:.2f}", " ".join(overrides)) for stage, seconds in rows])
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
