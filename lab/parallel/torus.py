"""The 2D-torus all-reduce on a flat tensor: reduce-scatter along rows, all-reduce along columns, all-gather
along rows (Mikami et al., arXiv 1811.05233).

Reduce-scatter is a ring of point-to-point steps (X - 1 sends of 1/X of the buffer per rank) rather than
`reduce_scatter_tensor`: gloo builds do not all have it (and this torch deprecates its name), while
isend/irecv exist on every backend, and the ring is exactly the algorithm the cost model describes. Each
shard is summed once, by its owner, and then copied, so every rank ends with bit-identical values and DDP
replicas cannot drift apart. The column phase uses the backend's own all-reduce. The row all-gather is the
mirror-image ring, receiving straight into the buffer: gloo's all_gather stages through a flat copy and was
twice as slow as the ring here (0.55 s against 0.18 s for 100 MB on a 2x2 grid).
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from lab.parallel.groups import TorusGroups


def padded_length(numel: int, x: int) -> int:
    """The smallest multiple of X that holds `numel` elements: every row rank gets an equal shard."""
    return -(-numel // x) * x


def ring_reduce_scatter_(chunks: list[torch.Tensor], groups: TorusGroups) -> torch.Tensor:
    """Sum `chunks[i]` over the row in place; returns chunks[position], now the row's full sum of that shard.

    Step s: send chunk (p - s - 1) to the next rank, receive chunk (p - s - 2) from the previous one and add
    it in; after X - 1 steps rank p holds the complete sum of chunk p.
    """
    x, p = len(chunks), groups.position
    following, preceding = groups.row_ranks[(p + 1) % x], groups.row_ranks[(p - 1) % x]
    incoming = torch.empty_like(chunks[0])
    for step in range(x - 1):
        send = dist.isend(chunks[(p - step - 1) % x], dst=following, group=groups.row)
        recv = dist.irecv(incoming, src=preceding, group=groups.row)
        recv.wait()
        send.wait()
        chunks[(p - step - 2) % x].add_(incoming)
    return chunks[p]


def ring_all_gather_(chunks: list[torch.Tensor], groups: TorusGroups) -> None:
    """Copy each row rank's chunks[position] to every rank of the row, received straight into place.

    Step s: send chunk (p - s) to the next rank, receive chunk (p - s - 1) from the previous one.
    """
    x, p = len(chunks), groups.position
    following, preceding = groups.row_ranks[(p + 1) % x], groups.row_ranks[(p - 1) % x]
    for step in range(x - 1):
        send = dist.isend(chunks[(p - step) % x], dst=following, group=groups.row)
        recv = dist.irecv(chunks[(p - step - 1) % x], src=preceding, group=groups.row)
        recv.wait()
        send.wait()


def torus_allreduce_(tensor: torch.Tensor, groups: TorusGroups, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Sum the flat `tensor` over all ranks of the grid, in place; `dtype` compresses what travels."""
    x, y = groups.grid.x, groups.grid.y
    if x * y == 1:
        return tensor
    work_dtype = dtype or tensor.dtype
    flat = tensor.view(-1)  # view: a non-contiguous tensor is an error, not a lost write
    in_place = work_dtype == tensor.dtype and flat.numel() % x == 0
    buffer = flat if in_place else torch.zeros(padded_length(flat.numel(), x), dtype=work_dtype, device=flat.device)
    if not in_place:
        buffer[: flat.numel()].copy_(flat)
    chunks = list(buffer.chunk(x))
    shard = ring_reduce_scatter_(chunks, groups) if x > 1 else buffer
    if y > 1:
        dist.all_reduce(shard, group=groups.column)
    if x > 1:
        ring_all_gather_(chunks, groups)
    if not in_place:
        flat.copy_(buffer[: flat.numel()])
    return tensor
