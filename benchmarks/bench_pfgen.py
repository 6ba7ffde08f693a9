"""Benchmark the pfgen-bench scorer: building the n-gram table cache, and scoring 50 questions x 10 trials.

Targets from issue 7: cache build for all 50 questions <= 60 s; scoring 500 answers <= 5 s on one core once
the cache exists (loading the data folder included). Also prints the sanity value of the 50 example answers.
Prints a table and writes benchmarks/results/pfgen_<cpu>_py<version>_numpy<version>.csv.
Run: PYTHONPATH=. python benchmarks/bench_pfgen.py [--data ../shared/data/pfgen-bench]
"""

from __future__ import annotations

import os

for _thread_variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_thread_variable, "1")

import argparse  # noqa: E402
import csv  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from machine import RESULTS, cpu_name, slug  # noqa: E402

from lab.eval.pfgen.data import load_examples  # noqa: E402
from lab.eval.pfgen.results import GeneratedAnswer, score_answers, summarize  # noqa: E402
from lab.eval.pfgen.scorer import load_scorers  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "pfgen-bench"


def timed(function):
    start, cpu = time.perf_counter(), time.process_time()
    value = function()
    return value, time.perf_counter() - start, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA.resolve())
    parser.add_argument("--trials", type=int, default=10)
    args = parser.parse_args()
    examples = load_examples(args.data / "questions.jsonl")
    rng = np.random.default_rng(0)
    answers = []  # example answers, cut or repeated at random so trials differ
    for trial in range(1, args.trials + 1):
        for i, e in enumerate(examples):
            cut = int(rng.integers(40, 180))
            answers.append(GeneratedAnswer(e.question, (e.answer * 2)[:cut], trial, i))
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        _, wall, cpu = timed(lambda: load_scorers(args.data, Path(cache)))
        rows.append(("build cache, 50 questions", wall, cpu, 60.0))
        scorers, wall, cpu = timed(lambda: load_scorers(args.data, Path(cache)))
        rows.append(("load data + cached tables", wall, cpu, None))
        scores, wall, cpu = timed(lambda: score_answers(answers, scorers))
        rows.append((f"score 50 x {args.trials} answers", wall, cpu, None))
        _, wall, cpu = timed(lambda: score_answers(answers, load_scorers(args.data, Path(cache))))
        rows.append((f"load + score 50 x {args.trials}", wall, cpu, 5.0))
        sanity = summarize(score_answers([GeneratedAnswer(e.question, e.answer, 1, 0) for e in examples], scorers))
    print(f"{'step':<30} {'wall s':>8} {'cpu s':>8} {'target s':>9}")
    for name, wall, cpu, target in rows:
        print(f"{name:<30} {wall:>8.2f} {cpu:>8.2f} {'' if target is None else f'{target:.0f}':>9}")
    print(
        f"example answers: score {sanity.score:.4f} F {sanity.fluency:.4f} T {sanity.truthfulness:.4f} "
        f"H {sanity.helpfulness:.4f} (published 1.050, F 1.155, T 0.996, H 1.0)"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = f"pfgen_{slug(cpu_name())}_py{platform.python_version()}_numpy{np.__version__}.csv"
    with open(RESULTS / name, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["step", "wall_s", "cpu_s", "target_s"])
        writer.writerows([(n, f"{w:.3f}", f"{c:.3f}", "" if t is None else t) for n, w, c, t in rows])
    print(f"wrote {RESULTS / name}")


if __name__ == "__main__":
    main()
