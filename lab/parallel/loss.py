"""Label-smoothed cross-entropy: large-batch recipes (Mikami et al. v2) use it to keep final accuracy."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def smoothed_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    """(1 - eps) * NLL of the target + eps * mean NLL over all classes; eps = 0 is plain cross-entropy."""
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"label smoothing must be in [0, 1), got {smoothing}")
    return F.cross_entropy(logits, targets, label_smoothing=smoothing)
