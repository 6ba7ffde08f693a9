"""Data-parallel training from the launcher's environment (Slurm tasks or submitit's local tasks).

A job with several tasks runs one process per task; `init_distributed` reads rank and world size from the
environment submitit exports, starts torch.distributed (gloo on CPU, NCCL on GPU) and returns a context the
training loop uses to split batches, average gradients (DDP) and let only rank 0 write.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def broadcast_flag(self, flag: bool) -> bool:
        """Rank 0's value of `flag` on every rank (so all ranks take the same branch)."""
        if not self.active:
            return flag
        value = torch.tensor([int(flag)])
        dist.broadcast(value, src=0)
        return bool(value.item())


def _launcher_world_size() -> int:
    for name in ("SLURM_NTASKS", "SUBMITIT_LOCAL_NTASKS", "WORLD_SIZE"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 1


def init_distributed() -> DistributedContext:
    """Join (or reuse) the job's process group; a single-task job gets the trivial context."""
    if dist.is_available() and dist.is_initialized():
        return DistributedContext(dist.get_rank(), dist.get_world_size())
    if _launcher_world_size() <= 1:
        return DistributedContext()
    import submitit

    env = submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend=backend, rank=env.rank, world_size=env.world_size)
    return DistributedContext(env.rank, env.world_size)


def resolve_device(device: str) -> torch.device:
    """'auto' picks CUDA when there is one; an explicit 'cuda' without one is an error, not a silent CPU run."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for but CUDA is not available (use device=cpu or auto)")
    return torch.device(device)
