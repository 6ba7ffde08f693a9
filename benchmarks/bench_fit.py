"""Benchmark the fitter: bootstrap refits of a 7-point power_floor, and the Chinchilla grid fit.

Targets from the analysis issue: 1,000 bootstrap refits of a 7-point curve in <= 2 s on one
core; the Chinchilla grid fit (4,500 starts, Huber on log residuals) in <= 30 s. Prints a table
and writes it to benchmarks/results/fit_<cpu>_py<version>_numpy<version>_lmfit<version>.csv.
Run: PYTHONPATH=. python benchmarks/bench_fit.py [--repeats 3]
"""

from __future__ import annotations

import os

for _thread_variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_thread_variable, "1")

import argparse  # noqa: E402
import csv  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import lmfit  # noqa: E402
import numpy as np  # noqa: E402

from analysis.chinchilla import (  # noqa: E402
    REPLICATION_ESTIMATES,
    REPLICATION_STDERR,
    fit_chinchilla,
    load_chinchilla,
    standard_errors_from_replication,
)
from analysis.fit import bootstrap, fit_law  # noqa: E402
from machine import RESULTS, cpu_name, slug  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHINCHILLA_CSV = ROOT / "tests" / "data" / "chinchilla" / "svg_extracted_data.csv"
N_VALUES = 1000 * 2.0 ** np.arange(7)


def results_path() -> Path:
    name = f"fit_{slug(cpu_name())}_py{platform.python_version()}_numpy{np.__version__}_lmfit{lmfit.__version__}.csv"
    return RESULTS / name


def time_call(function, repeats: int) -> tuple[float, object]:
    durations = []
    value = None
    for _ in range(repeats):
        start = time.perf_counter()
        value = function()
        durations.append(time.perf_counter() - start)
    return statistics.median(durations), value


def bootstrap_rows(repeats: int) -> list[dict[str, object]]:
    rng = np.random.default_rng(0)
    rows = []
    cases = [
        ("7 points, D fixed", N_VALUES, {"fix": {"D": 0.48}}, 1),
        ("7 points, D free", N_VALUES, {}, 1),
        ("7 n x 3 seeds, D fixed", np.repeat(N_VALUES, 3), {"fix": {"D": 0.48}}, 3),
    ]
    for label, n, options, _ in cases:
        y = 0.48 * n**-0.2 + 0.8 + rng.normal(0, 0.003, n.size)
        point_seconds, result = time_call(lambda: fit_law(n, y, "power_floor", **options), repeats)
        refit_seconds, boot = time_call(lambda: bootstrap(result, 1000, seed=0), repeats)
        rows.append(
            {
                "benchmark": f"bootstrap 1000 refits, power_floor, {label}",
                "seconds": round(refit_seconds, 4),
                "target_seconds": 2.0,
                "detail": f"point fit {point_seconds:.3f} s; {boot.bootstrap.n_converged}/1000 converged; "
                f"resample={boot.bootstrap.resample}",
            }
        )
    return rows


def chinchilla_rows(path: Path, repeats: int) -> list[dict[str, object]]:
    frame = load_chinchilla(path)
    seconds, result = time_call(lambda: fit_chinchilla(frame), repeats)
    distances = standard_errors_from_replication(result)
    estimates = ", ".join(
        f"{k}={result.params[k]:.4g} (repl {REPLICATION_ESTIMATES[k]:g} +- {REPLICATION_STDERR[k]:g}, "
        f"{distances[k]:.2f} se)"
        for k in REPLICATION_ESTIMATES
    )
    return [
        {
            "benchmark": f"chinchilla grid fit, {result.n_starts} starts, {result.n_points} points",
            "seconds": round(seconds, 3),
            "target_seconds": 30.0,
            "detail": f"converged={result.converged}; {estimates}",
        }
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="median over this many runs")
    parser.add_argument("--chinchilla-csv", type=Path, default=CHINCHILLA_CSV)
    parser.add_argument("--skip-chinchilla", action="store_true")
    args = parser.parse_args()
    rows = bootstrap_rows(args.repeats)
    if not args.skip_chinchilla:
        rows += chinchilla_rows(args.chinchilla_csv, max(1, args.repeats // 3))
    print(f"# {cpu_name()} | python {platform.python_version()} | numpy {np.__version__} | lmfit {lmfit.__version__}")
    print(f"{'benchmark':<62}{'seconds':>10}{'target':>8}  ok")
    for row in rows:
        ok = "yes" if row["seconds"] <= row["target_seconds"] else "NO"
        print(f"{row['benchmark']:<62}{row['seconds']:>10}{row['target_seconds']:>8}  {ok}")
        print(f"    {row['detail']}")
    out = results_path()
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["benchmark", "seconds", "target_seconds", "detail"])
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
