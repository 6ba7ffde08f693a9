"""Model merging of checkpoints of one architecture: weighted averaging and task arithmetic.

A checkpoint is a state dict, a `PlamoForCausalLM`, or an HF-layout folder (`save_pretrained`). Every input is
checked against the first before any arithmetic: the same tensor names, shapes and (for folders and models) the
same PlamoConfig; the first difference is named in the error. Arithmetic runs in float32 (float64 stays float64)
and the result is cast back to the first checkpoint's dtype per tensor.

- `merge_linear`: sum_i w_i theta_i. The weights must be non-negative and sum to 1 (within 1e-6); pass
  `normalize=True` to divide them by their sum instead. `weights=None` is the plain mean.
- `merge_task_arithmetic`: theta_base + sum_i lambda_i (theta_i - theta_base) (Ilharco et al., 2023); lambda may
  be any finite number (negative values subtract a task).

With `out=` the merged model is written with `save_pretrained` and the config of the inputs (a folder or model
among them, or `config=`). Quantized folders are refused: merge the float checkpoints, then quantize.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Sequence, Union

import torch

from lab.models.plamo.checkpoint import CONFIG_NAME, read_tensors, load_config, save_pretrained
from lab.models.plamo.config import PlamoConfig
from lab.models.plamo.model import PlamoForCausalLM

StateDict = dict[str, torch.Tensor]
Checkpoint = Union[StateDict, PlamoForCausalLM, str, Path]


class MergeError(ValueError):
    """Checkpoints that cannot be merged (different architectures) or merge coefficients that make no sense."""


@dataclasses.dataclass
class LoadedCheckpoint:
    tensors: StateDict
    config: PlamoConfig | None
    label: str


def load_checkpoint(source: Checkpoint, label: str) -> LoadedCheckpoint:
    """A state dict, model or HF-layout folder -> its tensors (on the CPU) and config when it has one."""
    if isinstance(source, PlamoForCausalLM):
        if getattr(source, "quantization_config", None) is not None:
            raise MergeError(f"{label} is a quantized model: merge float checkpoints, then quantize the result")
        return LoadedCheckpoint({k: v.detach().cpu() for k, v in source.state_dict().items()}, source.config, label)
    if isinstance(source, dict):
        bad = [k for k, v in source.items() if not isinstance(v, torch.Tensor)]
        if bad:
            raise MergeError(f"{label}: state dict entry {bad[0]!r} is not a tensor")
        return LoadedCheckpoint({k: v.detach().cpu() for k, v in source.items()}, None, label)
    if isinstance(source, (str, Path)):
        directory = Path(source)
        if not directory.is_dir():
            raise MergeError(f"{label}: {directory} is not a checkpoint folder")
        config_file = directory / CONFIG_NAME
        if config_file.exists() and "quantization_config" in json.loads(config_file.read_text()):
            raise MergeError(f"{label}: {directory} is a quantized checkpoint: merge float checkpoints, then quantize")
        return LoadedCheckpoint(read_tensors(directory, "cpu"), load_config(directory), f"{label} ({directory})")
    raise MergeError(f"{label}: expected a state dict, a PlamoForCausalLM or a folder, got {type(source).__name__}")


def _first_config_difference(a: PlamoConfig, b: PlamoConfig) -> str | None:
    for f in dataclasses.fields(PlamoConfig):
        if f.compare and getattr(a, f.name) != getattr(b, f.name):
            return f"{f.name}: {getattr(a, f.name)!r} vs {getattr(b, f.name)!r}"
    return None


def check_compatible(checkpoints: Sequence[LoadedCheckpoint]) -> None:
    """Raise a MergeError naming the first config field or tensor where a checkpoint differs from the first."""
    first = checkpoints[0]
    for other in checkpoints[1:]:
        if first.config is not None and other.config is not None:
            difference = _first_config_difference(first.config, other.config)
            if difference:
                raise MergeError(f"{other.label} has a different config than {first.label}: {difference}")
        for name, tensor in first.tensors.items():
            if name not in other.tensors:
                raise MergeError(f"tensor {name!r} is in {first.label} but missing from {other.label}")
            if other.tensors[name].shape != tensor.shape:
                raise MergeError(f"tensor {name!r} has shape {tuple(tensor.shape)} in {first.label} but "
                                 f"{tuple(other.tensors[name].shape)} in {other.label}")
            if other.tensors[name].is_floating_point() != tensor.is_floating_point():
                raise MergeError(f"tensor {name!r} is {tensor.dtype} in {first.label} but "
                                 f"{other.tensors[name].dtype} in {other.label}")
        extra = sorted(set(other.tensors) - set(first.tensors))
        if extra:
            raise MergeError(f"tensor {extra[0]!r} is in {other.label} but missing from {first.label}")


def _combine(checkpoints: Sequence[LoadedCheckpoint], coefficients: Sequence[float]) -> StateDict:
    """sum_i c_i theta_i per tensor, in float32 (or float64), cast back to the first checkpoint's dtype."""
    merged: StateDict = {}
    for name, reference in checkpoints[0].tensors.items():
        if not reference.is_floating_point():
            for other in checkpoints[1:]:
                if not torch.equal(other.tensors[name], reference):
                    raise MergeError(f"integer tensor {name!r} differs between {checkpoints[0].label} and "
                                     f"{other.label}; integer tensors cannot be averaged")
            merged[name] = reference.clone()
            continue
        compute = torch.promote_types(reference.dtype, torch.float32)
        total = torch.zeros(reference.shape, dtype=compute)
        for checkpoint, coefficient in zip(checkpoints, coefficients):
            total += coefficient * checkpoint.tensors[name].to(compute)
        merged[name] = total.to(reference.dtype)
    return merged


def _check_finite(values: Sequence[float], what: str) -> list[float]:
    numbers = [float(v) for v in values]
    if any(not math.isfinite(v) for v in numbers):
        raise MergeError(f"{what} must be finite numbers, got {list(values)}")
    return numbers


def _finish(merged: StateDict, loaded: Sequence[LoadedCheckpoint], out: str | Path | None,
            config: PlamoConfig | None) -> StateDict:
    if out is None:
        return merged
    config = config or next((c.config for c in loaded if c.config is not None), None)
    if config is None:
        raise MergeError("saving the merge needs a config: pass config= or give a folder or model among the inputs")
    with torch.device("meta"):
        model = PlamoForCausalLM(config)
    model.load_state_dict(merged, assign=True)
    save_pretrained(model, out)
    return merged


def merge_linear(checkpoints: Sequence[Checkpoint], weights: Sequence[float] | None = None, *,
                 normalize: bool = False, out: str | Path | None = None,
                 config: PlamoConfig | None = None) -> StateDict:
    """The weighted average sum_i w_i theta_i of same-architecture checkpoints; written to `out` if given."""
    if len(checkpoints) < 1:
        raise MergeError("merge_linear needs at least one checkpoint")
    weights = [1.0 / len(checkpoints)] * len(checkpoints) if weights is None else _check_finite(weights, "weights")
    if len(weights) != len(checkpoints):
        raise MergeError(f"{len(weights)} weights for {len(checkpoints)} checkpoints")
    if any(w < 0 for w in weights):
        raise MergeError(f"linear merge weights must be >= 0 (use task arithmetic to subtract), got {weights}")
    total = sum(weights)
    if normalize:
        if total <= 0:
            raise MergeError(f"cannot normalise weights that sum to {total}")
        weights = [w / total for w in weights]
    elif abs(total - 1.0) > 1e-6:
        raise MergeError(f"linear merge weights must sum to 1, got {weights} (sum {total:.6g}); "
                         "pass normalize=True to divide them by their sum")
    loaded = [load_checkpoint(c, f"checkpoint {i}") for i, c in enumerate(checkpoints)]
    check_compatible(loaded)
    return _finish(_combine(loaded, weights), loaded, out, config)


def merge_task_arithmetic(base: Checkpoint, finetuned: Sequence[Checkpoint], scales: float | Sequence[float] = 1.0,
                          *, out: str | Path | None = None, config: PlamoConfig | None = None) -> StateDict:
    """theta_base + sum_i scale_i (theta_i - theta_base); one number for `scales` applies to every task."""
    if len(finetuned) < 1:
        raise MergeError("merge_task_arithmetic needs at least one fine-tuned checkpoint")
    scales = [scales] * len(finetuned) if isinstance(scales, (int, float)) else list(scales)
    scales = _check_finite(scales, "scales")
    if len(scales) != len(finetuned):
        raise MergeError(f"{len(scales)} scales for {len(finetuned)} fine-tuned checkpoints")
    loaded = [load_checkpoint(base, "base")]
    loaded += [load_checkpoint(c, f"fine-tuned checkpoint {i}") for i, c in enumerate(finetuned)]
    check_compatible(loaded)
    coefficients = [1.0 - sum(scales), *scales]  # base + sum s_i (ft_i - base) = (1 - sum s_i) base + sum s_i ft_i
    return _finish(_combine(loaded, coefficients), loaded, out, config)
