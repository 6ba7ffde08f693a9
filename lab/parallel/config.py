"""Which all-reduce a data-parallel run uses: one small dataclass, validated before any process group exists."""

from __future__ import annotations

from dataclasses import dataclass

import torch

COMPRESSION_DTYPES: dict[str, torch.dtype | None] = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
KINDS = ("ring", "torus2d", "hierarchical")


@dataclass
class AllReduceConfig:
    """`ring`: DDP's stock all-reduce. `torus2d`: the X x Y grid all-reduce of Mikami et al.
    `hierarchical`: the same algorithm with rows on nodes (X = processes per node, or a divisor of it).

    grid_x = 0 means "processes per node" (from the launcher's environment); grid_y = 0 means N / X.
    compression casts the transferred shards to bf16/fp16 (summed in that dtype, as DDP's fp16 hook does).
    """

    kind: str = "ring"
    grid_x: int = 0
    grid_y: int = 0
    compression: str = "none"

    def validate(self, prefix: str = "allreduce") -> None:
        if self.kind not in KINDS:
            raise ValueError(f"{prefix}.kind={self.kind!r} is unknown; valid kinds: {', '.join(KINDS)}")
        if self.compression not in COMPRESSION_DTYPES:
            raise ValueError(f"{prefix}.compression={self.compression!r} is unknown; "
                             f"valid: {', '.join(COMPRESSION_DTYPES)}")
        if self.grid_x < 0 or self.grid_y < 0:
            raise ValueError(f"{prefix}.grid_x and grid_y must be >= 0 (0 = automatic), got "
                             f"{self.grid_x} x {self.grid_y}")

    @property
    def compression_dtype(self) -> torch.dtype | None:
        return COMPRESSION_DTYPES[self.compression]
