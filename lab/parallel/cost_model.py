"""Alpha-beta cost of all-reduce algorithms: time = alpha * latency steps + beta * bytes sent per rank.

Per rank, for M bytes over N = X * Y ranks (the busiest rank where ranks differ):
- ring: 2(N-1) steps, 2(N-1)/N * M bytes (reduce-scatter then all-gather around one ring).
- tree: binomial-tree reduce then broadcast, whole buffer per level, not pipelined: 2 ceil(log2 N) steps,
  2 ceil(log2 N) * M bytes.
- hierarchical (Horovod's leader scheme, the paper's baseline): pipelined reduce to a node leader (X-1 steps,
  M bytes), ring all-reduce of the whole buffer among the Y leaders (2(Y-1) steps, 2(Y-1)/Y * M), pipelined
  broadcast (X-1 steps, M). The `hierarchical` kind of `AllReduceConfig` instead runs the torus with rows on
  nodes, whose cost is `torus2d` at X = processes per node.
- torus2d: row reduce-scatter (X-1 steps, (X-1)/X * M), column all-reduce of the 1/X shard (2(Y-1) steps,
  2(Y-1)/Y * M/X), row all-gather (X-1 steps, (X-1)/X * M): 2(X-1) + 2(Y-1) steps, 2(N-1)/N * M bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from lab.core.registry import Registry


@dataclass(frozen=True)
class Cost:
    steps: int  # sequential message latencies
    bytes_per_rank: float  # bytes the busiest rank sends

    def seconds(self, alpha: float, beta: float) -> float:
        """alpha: seconds per message; beta: seconds per byte."""
        return alpha * self.steps + beta * self.bytes_per_rank


CostFunction = Callable[[float, int, int], Cost]
COST_MODELS: Registry[CostFunction] = Registry("cost model")


@COST_MODELS.register("ring")
def ring_cost(message_bytes: float, x: int, y: int) -> Cost:
    n = x * y
    return Cost(2 * (n - 1), 2 * (n - 1) / n * message_bytes)


@COST_MODELS.register("tree")
def tree_cost(message_bytes: float, x: int, y: int) -> Cost:
    levels = math.ceil(math.log2(x * y)) if x * y > 1 else 0
    return Cost(2 * levels, 2 * levels * message_bytes)


@COST_MODELS.register("hierarchical")
def hierarchical_cost(message_bytes: float, x: int, y: int) -> Cost:
    intra = message_bytes if x > 1 else 0.0
    return Cost(2 * (x - 1) + 2 * (y - 1), 2 * intra + 2 * (y - 1) / y * message_bytes)


@COST_MODELS.register("torus2d")
def torus2d_cost(message_bytes: float, x: int, y: int) -> Cost:
    shard = message_bytes / x
    return Cost(2 * (x - 1) + 2 * (y - 1), 2 * (x - 1) / x * message_bytes + 2 * (y - 1) / y * shard)


@dataclass(frozen=True)
class CostRow:
    algorithm: str
    x: int
    y: int
    steps: int
    bytes_per_rank: float
    seconds: float


def cost_table(message_bytes: float, grids: list[tuple[int, int]], alpha: float, beta: float) -> list[CostRow]:
    """Every registered algorithm on every (X, Y) grid (ring and tree only see N = X * Y)."""
    rows = []
    for x, y in grids:
        for name in COST_MODELS:
            cost = COST_MODELS.get(name)(message_bytes, x, y)
            rows.append(CostRow(name, x, y, cost.steps, cost.bytes_per_rank, cost.seconds(alpha, beta)))
    return rows


def format_cost_table(rows: list[CostRow]) -> str:
    lines = [f"{'algorithm':<14}{'grid':>10}{'N':>7}{'steps':>8}{'MB/rank':>10}{'predicted ms':>14}"]
    for r in rows:
        lines.append(f"{r.algorithm:<14}{f'{r.x}x{r.y}':>10}{r.x * r.y:>7}{r.steps:>8}"
                     f"{r.bytes_per_rank / 1e6:>10.1f}{r.seconds * 1e3:>14.2f}")
    return "\n".join(lines)


def plot_costs(message_bytes: float, x: int, node_counts: list[int], alpha: float, beta: float, path=None):
    """Predicted time against N for X ranks per row/node: the paper's scaling argument as a figure."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    sizes = [x * y for y in node_counts]
    for name in COST_MODELS:
        times = [COST_MODELS.get(name)(message_bytes, x, y).seconds(alpha, beta) * 1e3 for y in node_counts]
        ax.plot(sizes, times, marker="o", label=name)
    ax.set(xscale="log", yscale="log", xlabel="ranks N", ylabel="predicted ms per all-reduce",
           title=f"{message_bytes / 1e6:.0f} MB, X={x}, alpha={alpha * 1e6:.0f} us, {1e-9 / beta:.1f} GB/s")
    ax.legend()
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
