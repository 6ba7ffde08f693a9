"""Time per all-reduce of a ResNet-50-sized gradient (25M fp32 parameters): gloo's all_reduce (ring) against the
2D-torus all-reduce on the grids this machine can run, next to the alpha-beta cost model's prediction.

    python benchmarks/bench_allreduce.py                 # 4 processes: ring, 1x4, 2x2, 4x1 (+ 2x2 bf16)
    python benchmarks/bench_allreduce.py --params 1e6 --repeats 3

alpha (per-message latency) and beta (seconds per byte) are measured first with a ping-pong between two ranks,
so the prediction is made from numbers independent of the all-reduces it predicts. All ranks are processes on
this machine talking over loopback: with more processes than cores the "network" is the CPUs themselves.
Also prints the model at paper scale (2176 ranks) and saves its plot. Writes a CSV named by hardware/versions.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from lab.parallel import AllReduceConfig, TorusGroups, resolve_grid, torus_allreduce_  # noqa: E402
from lab.parallel.cost_model import COST_MODELS, cost_table, format_cost_table, plot_costs  # noqa: E402
from machine import RESULTS, cpu_name, slug  # noqa: E402


def _timed(fn, repeats: int) -> float:
    """Median over repeats of the slowest rank's time (a collective is done when its last rank is)."""
    times = []
    for _ in range(repeats + 1):  # the first is a warm-up
        dist.barrier()
        started = time.perf_counter()
        fn()
        elapsed = torch.tensor([time.perf_counter() - started], dtype=torch.float64)
        dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)
        times.append(elapsed.item())
    return statistics.median(times[1:])


def _ping_pong(rank: int, numel: int, repeats: int) -> float:
    """One-way time of a message of `numel` fp32 between ranks 0 and 1 (others idle)."""
    tensor = torch.zeros(numel)

    def exchange() -> None:
        if rank == 0:
            dist.send(tensor, 1)
            dist.recv(tensor, 1)
        elif rank == 1:
            dist.recv(tensor, 0)
            dist.send(tensor, 0)

    return _timed(exchange, repeats) / 2


def _worker(rank: int, world: int, folder: str, numel: int, repeats: int, grids: list[tuple[int, int, str]]) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=world)
    small, large = _ping_pong(rank, 2, repeats * 3), _ping_pong(rank, numel // 4, repeats)
    alpha = small
    beta = max(large - small, 1e-12) / (numel // 4 * 4)
    gradient = torch.randn(numel, generator=torch.Generator().manual_seed(rank))
    rows = [("ring", world, 1, "none", _timed(lambda: dist.all_reduce(gradient), repeats))]
    for x, y, compression in grids:
        config = AllReduceConfig("torus2d", grid_x=x, grid_y=y, compression=compression)
        groups = TorusGroups.build(resolve_grid(config, world, None))
        seconds = _timed(lambda: torus_allreduce_(gradient, groups, config.compression_dtype), repeats)
        rows.append(("torus2d", x, y, compression, seconds))
    # in place on one tensor: sums of a few randn vectors stay far from overflow, and no copy is timed
    if rank == 0:
        torch.save({"alpha": alpha, "beta": beta, "rows": rows}, f"{folder}/result.pt")
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=float, default=25e6)
    parser.add_argument("--world", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    numel, world = int(args.params), args.world
    grids = [(x, world // x, "none") for x in range(1, world + 1) if world % x == 0]
    grids += [(x, y, "bf16") for x, y, _ in grids if 1 < x < world]
    with tempfile.TemporaryDirectory(prefix="bench_allreduce_") as folder:
        mp.start_processes(_worker, args=(world, folder, numel, args.repeats, grids), nprocs=world,
                           start_method="fork")
        result = torch.load(f"{folder}/result.pt")
    alpha, beta = result["alpha"], result["beta"]
    message = numel * 4
    ring_seconds = result["rows"][0][4]
    print(f"\n{numel / 1e6:.1f}M fp32 parameters ({message / 1e6:.0f} MB), {world} gloo processes on "
          f"{os.cpu_count()} CPUs; ping-pong: alpha {alpha * 1e6:.0f} us, {1e-9 / beta:.2f} GB/s")
    header = f"{'algorithm':<10}{'grid':>6}{'compr':>7}{'steps':>7}{'measured ms':>13}{'predicted ms':>14}" \
             f"{'meas/pred':>11}{'vs ring':>9}"
    print(header)
    table = []
    for name, x, y, compression, seconds in result["rows"]:
        bytes_factor = 0.5 if compression != "none" else 1.0
        cost = COST_MODELS.get(name)(message * bytes_factor, x, y)
        predicted = cost.seconds(alpha, beta)
        grid = f"{x}x{y}" if name == "torus2d" else f"N={x}"
        table.append((name, grid, compression, cost.steps, seconds, predicted, seconds / predicted,
                      ring_seconds / seconds))
        print(f"{name:<10}{grid:>6}{compression:>7}{cost.steps:>7}{seconds * 1e3:>13.1f}{predicted * 1e3:>14.1f}"
              f"{seconds / predicted:>11.2f}{ring_seconds / seconds:>9.2f}")
    tag = f"{slug(cpu_name())}_{os.cpu_count()}cpu_torch{torch.__version__.split('+')[0]}"
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"allreduce_{tag}.csv"
    with open(out, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["algorithm", "grid", "compression", "steps", "measured_ms", "predicted_ms",
                         "measured_over_predicted", "speedup_vs_ring", "params", "world", "alpha_us", "gb_per_s"])
        for row in table:
            writer.writerow([*row[:4], *(f"{v:.4g}" for v in (row[4] * 1e3, row[5] * 1e3, row[6], row[7])),
                             numel, world, f"{alpha * 1e6:.1f}", f"{1e-9 / beta:.3f}"])
    print(f"wrote {out}")
    print("\nThe same model at paper scale (2176 ranks, 4 per node; 10 us, 10 GB/s per link assumed):")
    print(format_cost_table(cost_table(message, [(1, 2176), (4, 544), (32, 68)], 10e-6, 1e-10)))
    plot = RESULTS / f"allreduce_costmodel_{tag}.png"
    plot_costs(message, 4, [1, 4, 16, 64, 256, 544], 10e-6, 1e-10, plot)
    print(f"wrote {plot}")


if __name__ == "__main__":
    main()
