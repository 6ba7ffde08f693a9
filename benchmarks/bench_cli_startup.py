"""Start-up of the `lab` command against the floor every Python data tool pays (numpy + pandas imported).

    python benchmarks/bench_cli_startup.py [--repeats 7]

Each command runs `--repeats` times in a fresh interpreter, alternating with the others so background load
hits them alike; the median wall time of each and its ratio to `python -c "import numpy, pandas"` are printed
and appended to benchmarks/results/cli_startup_<cpu>.csv. The target (issue 19): `lab --help` and
`lab fit --help` within 3x of the floor. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import RESULTS, cpu_name, slug  # noqa: E402

COMMANDS = {
    "import numpy, pandas": [sys.executable, "-c", "import numpy, pandas"],
    "lab --help": [sys.executable, "-m", "experiments.cli", "--help"],
    "lab fit --help": [sys.executable, "-m", "experiments.cli", "fit", "--help"],
    "lab eval pfgen-score --help": [sys.executable, "-m", "experiments.cli", "eval", "pfgen-score", "--help"],
    "lab sweep --help": [sys.executable, "-m", "experiments.cli", "sweep", "--help"],
}
FLOOR = "import numpy, pandas"


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="fresh interpreters per command (median taken)")
    args = parser.parse_args()
    for command in COMMANDS.values():  # warm the file cache once
        timed(command)
    seconds: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.repeats):
        for name, command in COMMANDS.items():
            seconds[name].append(timed(command))
    floor = statistics.median(seconds[FLOOR])
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    rows = [{"timestamp": stamp, "command": name, "median_s": round(statistics.median(values), 3),
             "ratio_to_floor": round(statistics.median(values) / floor, 2), "repeats": args.repeats}
            for name, values in seconds.items()]
    for row in rows:
        print(f"{row['command']:<30} {row['median_s']:6.2f} s  {row['ratio_to_floor']:5.2f}x")
    out = RESULTS / f"cli_startup_{slug(cpu_name())}.csv"
    new = not out.exists()
    with out.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        if new:
            writer.writeheader()
        writer.writerows(rows)
    print(f"appended to {out}")


if __name__ == "__main__":
    main()
