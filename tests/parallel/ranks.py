"""Run a function on several gloo ranks on this machine (loopback file:// rendezvous) and collect results.

Processes are forked, not spawned: a spawned child re-imports torch (seconds each on a shared 2-core box),
a forked one starts in milliseconds. Children use one thread so no OpenMP pool is shared across fork.
DDP's first construction imports torch._dynamo (~900 modules); importing it here, once, before the fork
keeps every child from paying that again.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch._dynamo  # noqa: F401  (see above)
import torch.multiprocessing as mp

from lab.core.distributed import DistributedContext


def _entry(rank: int, fn: Callable[..., Any], world: int, folder: str, args: tuple) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=world)
    try:
        result = fn(DistributedContext(rank, world), *args)
    finally:
        dist.destroy_process_group()
    (Path(folder) / f"rank{rank}.pkl").write_bytes(pickle.dumps(result))


def run_ranks(fn: Callable[..., Any], world: int, folder: Path, *args: Any) -> list[Any]:
    """`fn(context, *args)` on `world` ranks; returns each rank's result, in rank order."""
    folder.mkdir(parents=True, exist_ok=True)
    mp.start_processes(_entry, args=(fn, world, str(folder), args), nprocs=world, start_method="fork")
    return [pickle.loads((folder / f"rank{r}.pkl").read_bytes()) for r in range(world)]
