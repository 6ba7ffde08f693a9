"""Weight-only int8 / int4 quantization of a PLaMo model's linear layers, saved in the Hugging Face layout.

Scheme (symmetric, round to nearest, float32 scales): a weight row (out_features) is cut into groups of
`group_size` consecutive input columns (`group_size=None`: one group per row, i.e. per output channel). Each group
gets scale s = max|w| / qmax with qmax = 2^(bits-1) - 1 (127 for int8, 7 for int4) and stores q = round(w / s)
clamped to [-qmax, qmax], so |w - q s| <= s / 2 for every weight. An all-zero group gets s = 1 (q = 0).
int8 stores q as int8 (out, in); int4 stores q + 8 (in [1, 15]) as uint8 (out, in / 2), two columns per byte:
column 2j in the low nibble, column 2j + 1 in the high nibble. Scales are float32 (out, in / group_size).

`QuantizedLinear` keeps only the packed weights and the scales and dequantizes the whole matrix on every forward
(plain torch, any device), so memory shrinks and outputs match `F.linear(x, dequantized weight)` exactly; the
activations stay in the input's dtype. Skipped by default: the embedding (tied to the output head, it is a lookup
table, not a matmul input), an untied `lm_head`, and Mamba's `dt_proj` (a few thousand weights whose output is
exponentiated into the SSM step size, where a rounding error compounds over every token).

Layout on disk: config.json is the float model's config plus a `quantization_config` entry (method, bits,
group size, the quantized module names); model.safetensors holds `<module>.qweight` and `<module>.scales` for
each quantized module and the float tensors of everything else. `lab.models.plamo.load_pretrained` recognises
such a folder by its `quantization_config` and loads it through `load_quantized` (registered in
`checkpoint.QUANTIZED_LOADERS`), so `lab eval pfgen --model <quantized folder>` works as on a float one.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import safetensors.torch
import torch
import torch.nn.functional as F
from torch import nn

from lab.models.plamo.checkpoint import (
    CONFIG_NAME,
    QUANTIZATION_KEY,
    WEIGHTS_NAME,
    CheckpointError,
    load_config,
    load_pretrained,
    read_config_data,
    read_tensors,
    write_atomically,
)
from lab.models.plamo.config import PlamoConfig
from lab.models.plamo.model import PlamoForCausalLM

QUANT_METHOD = "lab_weight_only"
DEFAULT_SKIP = ("embed_tokens", "lm_head", "dt_proj")


class QuantizationError(ValueError):
    """A quantization request that cannot be met: unsupported bits, or a layer the group size does not divide."""


@dataclass(frozen=True)
class QuantizationConfig:
    """What `quantize_model` did; stored as config.json's `quantization_config` so a load can rebuild it."""

    bits: int = 8
    group_size: int | None = 128  # None: one scale per output channel
    modules: tuple[str, ...] = ()  # the quantized nn.Linear names
    quant_method: str = QUANT_METHOD
    symmetric: bool = True
    scale_dtype: str = "float32"
    skip: tuple[str, ...] = DEFAULT_SKIP

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict, source: str = "quantization_config") -> QuantizationConfig:
        if data.get("quant_method") != QUANT_METHOD:
            raise CheckpointError(f"{source}: quant_method {data.get('quant_method')!r} is not {QUANT_METHOD!r}")
        try:
            return cls(bits=int(data["bits"]), group_size=data.get("group_size"),
                       modules=tuple(data["modules"]), skip=tuple(data.get("skip", ())))
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(f"{source}: unreadable quantization_config ({error!r})") from None


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """int8 values in [-8, 7], (out, in) with in even -> uint8 (out, in / 2): low nibble even column."""
    shifted = (q.to(torch.int16) + 8).to(torch.uint8)
    return shifted[:, 0::2] | (shifted[:, 1::2] << 4)


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """The inverse of `pack_int4`: uint8 (out, in / 2) -> int8 (out, in)."""
    low = (packed & 0x0F).to(torch.int8) - 8
    high = (packed >> 4).to(torch.int8) - 8
    return torch.stack([low, high], dim=-1).reshape(packed.shape[0], -1)


@dataclass(frozen=True)
class IntFormat:
    """How integers of one width are stored: the storage dtype, values per stored element, and (un)packing."""

    bits: int
    storage: torch.dtype
    per_element: int
    pack: Callable[[torch.Tensor], torch.Tensor]
    unpack: Callable[[torch.Tensor], torch.Tensor]

    @property
    def qmax(self) -> int:
        return 2 ** (self.bits - 1) - 1


def _same(q: torch.Tensor) -> torch.Tensor:
    return q


FORMATS: dict[int, IntFormat] = {
    8: IntFormat(8, torch.int8, 1, _same, _same),
    4: IntFormat(4, torch.uint8, 2, pack_int4, unpack_int4),
}
SUPPORTED_BITS = tuple(sorted(FORMATS))


def check_bits(bits: int) -> IntFormat:
    if isinstance(bits, bool) or bits not in FORMATS:
        raise QuantizationError(f"bits must be one of {SUPPORTED_BITS}, got {bits!r}")
    return FORMATS[bits]


def check_group(name: str, in_features: int, bits: int, group_size: int | None) -> None:
    """Raise a QuantizationError naming the layer when its input width cannot be grouped or packed."""
    if group_size is not None and (isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1):
        raise QuantizationError(f"group_size must be a positive integer or None (per channel), got {group_size!r}")
    if group_size is not None and in_features % group_size:
        raise QuantizationError(
            f"layer {name!r}: in_features {in_features} is not divisible by group_size {group_size}; choose a "
            f"group size that divides it, or skip the layer (skip=(..., {name.rsplit('.', 1)[-1]!r}))"
        )
    per_element = check_bits(bits).per_element
    if in_features % per_element:
        raise QuantizationError(f"layer {name!r}: int{bits} packs {per_element} columns per byte, in_features "
                                f"{in_features} is not a multiple")


def quantize_weight(weight: torch.Tensor, bits: int, group_size: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """weight (out, in) -> (q, scales): q int8 (out, in) in [-qmax, qmax], scales float32 (out, groups)."""
    qmax = check_bits(bits).qmax
    out_features, in_features = weight.shape
    group = in_features if group_size is None else group_size
    check_group("weight", in_features, bits, group_size)
    grouped = weight.detach().float().reshape(out_features, in_features // group, group)
    absmax = grouped.abs().amax(dim=-1)
    scales = torch.where(absmax > 0, absmax / qmax, torch.ones_like(absmax))
    q = torch.round(grouped / scales[..., None]).clamp(-qmax, qmax).to(torch.int8)
    return q.reshape(out_features, in_features), scales


def dequantize_weight(q: torch.Tensor, scales: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """q int8 (out, in) and scales (out, groups) -> the float weight (out, in)."""
    out_features, in_features = q.shape
    groups = scales.shape[1]
    grouped = q.reshape(out_features, groups, in_features // groups).to(scales.dtype) * scales[..., None]
    return grouped.reshape(out_features, in_features).to(dtype)


class QuantizedLinear(nn.Module):
    """A bias-free linear layer holding packed integer weights and float32 scales; dequantizes in forward."""

    def __init__(self, in_features: int, out_features: int, bits: int, group_size: int | None,
                 device: torch.device | str | None = None) -> None:
        super().__init__()
        self.format = check_bits(bits)
        check_group("QuantizedLinear", in_features, bits, group_size)
        self.in_features, self.out_features, self.bits, self.group_size = in_features, out_features, bits, group_size
        columns = in_features // self.format.per_element
        groups = 1 if group_size is None else in_features // group_size
        self.register_buffer("qweight", torch.zeros(out_features, columns, dtype=self.format.storage, device=device))
        self.register_buffer("scales", torch.ones(out_features, groups, dtype=torch.float32, device=device))

    @classmethod
    def from_linear(cls, linear: nn.Linear, bits: int, group_size: int | None) -> QuantizedLinear:
        if linear.bias is not None:
            raise QuantizationError("QuantizedLinear supports bias-free layers only (PLaMo has no biases)")
        module = cls(linear.in_features, linear.out_features, bits, group_size, device=linear.weight.device)
        q, scales = quantize_weight(linear.weight, bits, group_size)
        module.qweight.copy_(module.format.pack(q))
        module.scales.copy_(scales)
        return module

    def int_weight(self) -> torch.Tensor:
        """The integer weights, unpacked: int8 (out, in)."""
        return self.format.unpack(self.qweight)

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return dequantize_weight(self.int_weight(), self.scales, dtype)

    @property
    def weight(self) -> torch.Tensor:
        """The dequantized weight, so code that reads `.weight` (an untied output head) keeps working."""
        return self.dequantize()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        compute = torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else x.dtype
        return F.linear(x.to(compute), self.dequantize(compute))

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bits={self.bits}, "
                f"group_size={self.group_size}")


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def linear_names(model: nn.Module, skip: Sequence[str]) -> list[str]:
    """Names of the nn.Linear modules to quantize: every one whose name contains none of the `skip` parts."""
    return [name for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and not any(part in name for part in skip)]


def quantize_model(model: PlamoForCausalLM, bits: int = 8, group_size: int | None = 128,
                   skip: Sequence[str] = DEFAULT_SKIP) -> PlamoForCausalLM:
    """Replace the model's linear layers (in place) by QuantizedLinear; returns the model, which keeps working
    with forward, the loss, `evaluate_text` and `generate`. Every layer is checked before any is changed."""
    check_bits(bits)
    if getattr(model, "quantization_config", None) is not None:
        raise QuantizationError("this model is already quantized")
    names = linear_names(model, skip)
    if not names:
        raise QuantizationError(f"no linear layer left to quantize after skip={tuple(skip)}")
    for name in names:
        linear = model.get_submodule(name)
        if linear.bias is not None:
            raise QuantizationError(f"layer {name!r} has a bias; QuantizedLinear supports bias-free layers only")
        check_group(name, linear.in_features, bits, group_size)
    for name in names:
        _set_submodule(model, name, QuantizedLinear.from_linear(model.get_submodule(name), bits, group_size))
    model.quantization_config = QuantizationConfig(bits, group_size, tuple(names), skip=tuple(skip))
    return model


def _skeleton(config: PlamoConfig, quantization: QuantizationConfig) -> PlamoForCausalLM:
    """The quantized model's structure on the meta device, ready for `load_state_dict(assign=True)`."""
    with torch.device("meta"):
        model = PlamoForCausalLM(config)
        for name in quantization.modules:
            try:
                linear = model.get_submodule(name)
            except AttributeError:
                raise CheckpointError(f"quantization_config names {name!r}, which this config does not have") from None
            _set_submodule(model, name, QuantizedLinear(linear.in_features, linear.out_features,
                                                        quantization.bits, quantization.group_size))
    model.quantization_config = quantization
    return model


def save_quantized(model: PlamoForCausalLM, directory: str | Path) -> Path:
    """config.json (with `quantization_config`) and model.safetensors of packed weights, scales and float rest."""
    quantization = getattr(model, "quantization_config", None)
    if quantization is None:
        raise QuantizationError("the model is not quantized: call quantize_model first (or use save_pretrained)")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {name: tensor.detach().to("cpu").contiguous() for name, tensor in model.state_dict().items()}
    config = model.config.to_dict()
    config["torch_dtype"] = str(model.model.embed_tokens.weight.dtype).removeprefix("torch.")
    config[QUANTIZATION_KEY] = quantization.to_dict()
    write_atomically(directory / WEIGHTS_NAME, lambda path: safetensors.torch.save_file(
        tensors, str(path), metadata={"format": "pt"}))  # fmt: skip
    write_atomically(directory / CONFIG_NAME, lambda path: path.write_text(json.dumps(config, indent=2) + "\n"))
    return directory


def _check_quantized_tensors(model: nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """One CheckpointError listing every missing, unexpected, wrong-shaped or wrong-dtype tensor."""
    expected = model.state_dict()
    problems = [f"missing {name}" for name in expected if name not in tensors]
    problems += [f"unexpected {name}" for name in tensors if name not in expected]
    for name, tensor in tensors.items():
        want = expected.get(name)
        if want is None:
            continue
        dtype_ok = tensor.dtype == want.dtype if not want.is_floating_point() else tensor.is_floating_point()
        if tuple(tensor.shape) != tuple(want.shape) or not dtype_ok:
            problems.append(
                f"{name}: file {tuple(tensor.shape)} {tensor.dtype}, model {tuple(want.shape)} {want.dtype}")
    if problems:
        shown = "\n  ".join(problems[:20]) + (f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else "")
        raise CheckpointError(f"{source} does not match its quantization_config:\n  {shown}")


def load_quantized(directory: str | Path, *, device: str | torch.device = "cpu",
                   dtype: torch.dtype | None = None) -> PlamoForCausalLM:
    """Load a folder written by `save_quantized` (one without `quantization_config` is an error). `dtype` casts the
    float tensors (embedding, norms, skipped layers); packed weights and their float32 scales stay as stored."""
    directory = Path(directory)
    data = read_config_data(directory).get(QUANTIZATION_KEY)
    if data is None:
        raise CheckpointError(f"{directory / CONFIG_NAME} has no quantization_config: load it with load_pretrained")
    quantization = QuantizationConfig.from_dict(data, source=str(directory / CONFIG_NAME))
    check_bits(quantization.bits)
    model = _skeleton(load_config(directory), quantization)
    tensors = read_tensors(directory, device)
    _check_quantized_tensors(model, tensors, str(directory))
    if dtype is not None:
        scales = {f"{name}.scales" for name in quantization.modules}
        tensors = {name: tensor.to(dtype) if tensor.is_floating_point() and name not in scales else tensor
                   for name, tensor in tensors.items()}
    model.load_state_dict(tensors, assign=True)
    return model


def load_model(directory: str | Path, *, device: str | torch.device = "cpu") -> PlamoForCausalLM:
    """A float or a quantized HF-layout folder, whichever it holds (the same as `load_pretrained`)."""
    return load_pretrained(directory, device=device)


def model_size_bytes(model: nn.Module) -> int:
    """Bytes of every parameter and buffer (tied tensors counted once): what the checkpoint holds."""
    seen, total = set(), 0
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.data_ptr() not in seen:
            seen.add(tensor.data_ptr())
            total += tensor.numel() * tensor.element_size()
    return total
