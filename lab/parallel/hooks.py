"""Choose the gradient all-reduce of a DDP model from an `AllReduceConfig`: the one call a training loop makes.

Kinds are a registry, so a new algorithm is one decorated function. The torus hook runs its three phases
synchronously and hands DDP a completed future: correctness first; overlapping the phases with the backward
pass (chaining futures) is a later optimisation.

No `from __future__ import annotations` here: DDP checks the hook's annotations are the real
`dist.GradBucket` and `Future[Tensor]` objects, not strings.
"""

from dataclasses import dataclass
from typing import Callable

import torch
import torch.distributed as dist
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.nn.parallel import DistributedDataParallel

from lab.core.distributed import DistributedContext
from lab.parallel.config import AllReduceConfig
from lab.parallel.grid import TorusGrid, processes_per_node, resolve_grid
from lab.parallel.groups import TorusGroups
from lab.parallel.torus import torus_allreduce_
from lab.core.registry import Registry

Installer = Callable[[DistributedDataParallel, AllReduceConfig, DistributedContext, int | None], TorusGrid | None]
ALLREDUCE: Registry[Installer] = Registry("all-reduce kind")
RING_COMPRESSION_HOOKS = {"none": None, "bf16": default_hooks.bf16_compress_hook, "fp16": default_hooks.fp16_compress_hook}


@dataclass
class TorusHookState:
    groups: TorusGroups
    world_size: int
    dtype: torch.dtype | None


def torus_hook(state: TorusHookState, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """DDP comm hook: average the bucket's gradients with the 2D-torus all-reduce."""
    gradients = bucket.buffer()
    gradients.div_(state.world_size)  # divide first, as DDP's hooks do, so fp16 sums cannot overflow
    torus_allreduce_(gradients, state.groups, state.dtype)
    future: torch.futures.Future[torch.Tensor] = torch.futures.Future()
    future.set_result(gradients)
    return future


@ALLREDUCE.register("ring")
def _install_ring(model: DistributedDataParallel, config: AllReduceConfig, world: DistributedContext,
                  local_size: int | None) -> None:
    """DDP's stock all-reduce (a ring or tree inside the backend), optionally with its compression hook."""
    hook = RING_COMPRESSION_HOOKS.get(config.compression)
    if hook is not None:
        model.register_comm_hook(None, hook)
    return None


def _install_torus(model: DistributedDataParallel, config: AllReduceConfig, world: DistributedContext,
                   local_size: int | None) -> TorusGrid:
    grid = resolve_grid(config, world.world_size, local_size)  # raises on every rank before any group exists
    state = TorusHookState(TorusGroups.build(grid), world.world_size, config.compression_dtype)
    model.register_comm_hook(state, torus_hook)
    return grid


ALLREDUCE.register("torus2d")(_install_torus)
ALLREDUCE.register("hierarchical")(_install_torus)  # same algorithm; resolve_grid pins rows to nodes


def register_allreduce(model: DistributedDataParallel, config: AllReduceConfig, world: DistributedContext,
                       local_size: int | None = None) -> TorusGrid | None:
    """Make `model` average gradients with `config.kind`; returns the grid used (None for the stock ring).

    Call it once, right after wrapping the model in DDP and before the first backward, on every rank.
    `local_size` (processes per node) defaults to what the launcher exported.
    """
    config.validate()
    if local_size is None:
        local_size = processes_per_node()
    return ALLREDUCE.get(config.kind)(model, config, world, local_size)
