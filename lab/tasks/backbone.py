"""ResNet backbones for the real-data tasks, and loading our pre-trained weights into them.

timm and torchvision name ResNet parameters identically (conv1, bn1, layer1..4, fc), so a `model.pt` written
by the pre-training stage (a timm classifier) loads into a torchvision detection or segmentation body by
name, minus the classifier. A grey-image backbone is widened to RGB the way timm does it (channel mean).
"""

from __future__ import annotations

from pathlib import Path

import torch
from timm.models import adapt_input_conv

from lab.core.registry import UnknownNameError

BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
BOTTLENECK = frozenset({"resnet50", "resnet101", "resnet152"})  # blocks that allow dilation (DeepLab)


def check_backbone(name: str) -> None:
    if name not in BACKBONES:
        raise UnknownNameError(f"unknown backbone {name!r}; valid names: {', '.join(BACKBONES)}")


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a pre-training `model.pt`, a training checkpoint ({'model': ...}) or a DDP save."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pre-trained weights {path} do not exist")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"pre-trained weights {path} are not a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def widen_input_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """A first convolution for `in_chans` inputs that answers a grey image as the original did."""
    if weight.shape[1] == 1:  # grey pre-training: every colour channel gets an equal share
        return weight.repeat(1, in_chans, 1, 1) / in_chans
    return adapt_input_conv(in_chans, weight)


def load_backbone_weights(body: torch.nn.Module, path: str | Path, head: str = "fc.") -> None:
    """Load a ResNet state dict into `body` (all of it except `head`); anything that does not fit is an error."""
    state = {k: v for k, v in read_weights(path).items() if not k.startswith(head)}
    target = body.state_dict()
    conv = "conv1.weight"
    if conv in state and conv in target and state[conv].shape[1] != target[conv].shape[1]:
        state[conv] = widen_input_conv(state[conv], target[conv].shape[1])
    missing = [k for k in target if k not in state and not k.endswith("num_batches_tracked") and not k.startswith(head)]
    unexpected = [k for k in state if k not in target]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(target[k].shape)}" for k in state
             if k in target and state[k].shape != target[k].shape]
    if missing or unexpected or wrong:
        raise ValueError(f"pre-trained weights {path} do not fit the backbone: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}, shape mismatch {wrong[:5]} (a ResNet of another depth?)")
    body.load_state_dict(state, strict=False)
