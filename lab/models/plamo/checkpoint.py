"""Save and load PLaMo 2 in the Hugging Face layout: a directory with config.json and model.safetensors.

Tensor names are the public checkpoint's (see model.py). Tied embeddings are stored once, as
`model.embed_tokens.weight`; a file that also holds `lm_head.weight` for a tied config loads (the copy is
ignored). Sharded checkpoints (model.safetensors.index.json) load too. A folder whose config.json holds a
`quantization_config` (written by `lab post quantize`) loads through the loader registered for its `quant_method`,
so every consumer of `load_pretrained` (`lab eval pfgen`, the post-training stages) takes quantized folders too.
Every problem with a file is a `CheckpointError` that names the file and, for tensors, every missing, unexpected or
wrong-shaped name.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch

from lab.core.rundir import current_umask
from lab.models.plamo.config import PlamoConfig, PlamoConfigError
from lab.models.plamo.model import PlamoForCausalLM

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"
TIED_OUTPUT = "lm_head.weight"
QUANTIZATION_KEY = "quantization_config"

# quant_method -> "module:function(directory, *, device, dtype)" loading such a folder. Imported only when a folder
# needs it: the quantizers live in lab.post and build on this module.
QUANTIZED_LOADERS: dict[str, str] = {"lab_weight_only": "lab.post.quantize:load_quantized"}


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: missing, corrupt, or not matching its config."""


def save_pretrained(model: PlamoForCausalLM, directory: str | Path) -> Path:
    """Write config.json and model.safetensors (each atomically) into `directory`; returns the directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {name: tensor.detach().to("cpu").contiguous() for name, tensor in model.state_dict().items()}
    config = model.config.to_dict()
    config["torch_dtype"] = str(next(iter(tensors.values())).dtype).removeprefix("torch.")
    write_atomically(directory / WEIGHTS_NAME, lambda path: safetensors.torch.save_file(
        tensors, str(path), metadata={"format": "pt"}))  # fmt: skip
    write_atomically(directory / CONFIG_NAME, lambda path: path.write_text(json.dumps(config, indent=2) + "\n"))
    return directory


def write_atomically(target: Path, write: Any) -> None:
    """`write(path)` to a temporary name, then rename onto `target`. The file gets the mode a plain `open` gives
    (0666 minus the umask): safetensors writes 0600, which collaborators on a shared cluster cannot read."""
    temporary = target.with_name(f".{target.name}.tmp")
    write(temporary)
    os.chmod(temporary, 0o666 & ~current_umask())
    os.replace(temporary, target)


def read_config_data(path: str | Path) -> dict[str, Any]:
    """config.json of a checkpoint directory (or the file itself) as a dict, quantization_config included."""
    path = Path(path)
    file = path / CONFIG_NAME if path.is_dir() else path
    try:
        data = json.loads(file.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"no PLaMo config at {file}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{file}: not a readable JSON config ({error})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{file}: expected a JSON object, got {type(data).__name__}")
    return data


def load_config(path: str | Path) -> PlamoConfig:
    """The config of a checkpoint directory, or of a config.json file (a quantization_config is not part of it)."""
    path = Path(path)
    file = path / CONFIG_NAME if path.is_dir() else path
    data = {k: v for k, v in read_config_data(path).items() if k != QUANTIZATION_KEY}
    try:
        return PlamoConfig.from_dict(data, strict=False)
    except PlamoConfigError as error:
        raise CheckpointError(f"{file}: {error}") from None


def read_tensors(directory: Path, device: str | torch.device) -> dict[str, torch.Tensor]:
    single, index = directory / WEIGHTS_NAME, directory / INDEX_NAME
    if single.exists():
        files = [single]
    elif index.exists():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
            files = [directory / name for name in sorted(set(weight_map.values()))]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise CheckpointError(f"{index}: not a readable safetensors index ({error!r})") from None
    else:
        raise CheckpointError(f"no {WEIGHTS_NAME} (or {INDEX_NAME}) in {directory}")
    tensors: dict[str, torch.Tensor] = {}
    for file in files:
        try:
            tensors.update(safetensors.torch.load_file(str(file), device=str(device)))
        except (safetensors.SafetensorError, OSError, ValueError, RuntimeError) as error:
            raise CheckpointError(f"{file}: corrupt or unreadable safetensors file ({error})") from None
    return tensors


def check_tensors(model: torch.nn.Module, tensors: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Raise one CheckpointError listing every missing, unexpected, wrong-shaped or non-float tensor."""
    expected = {name: tuple(p.shape) for name, p in model.state_dict().items()}
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [
        f"{name}: file {tuple(t.shape)} {str(t.dtype).removeprefix('torch.')}, model {expected[name]}"
        for name, t in sorted(tensors.items())
        if name in expected and (tuple(t.shape) != expected[name] or not t.is_floating_point())
    ]
    problems = []
    for label, names in (("missing", missing), ("unexpected", unexpected), ("wrong shape or dtype", wrong)):
        if names:
            shown = "\n  ".join(names[:20]) + (f"\n  ... and {len(names) - 20} more" if len(names) > 20 else "")
            problems.append(f"{len(names)} {label} tensor(s):\n  {shown}")
    if problems:
        raise CheckpointError(f"{source} does not match its config:\n" + "\n".join(problems))


def load_pretrained(
    directory: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
) -> PlamoForCausalLM:
    """Build the model from config.json on the meta device and assign the file's tensors (no double copy).

    A quantized folder comes back as the quantized model (its linear layers dequantize on the fly); `dtype` then
    applies to its float tensors, not to the integer weights and their scales."""
    directory = Path(directory)
    quantization = read_config_data(directory).get(QUANTIZATION_KEY)
    if quantization is not None:
        return quantized_loader(quantization, directory / CONFIG_NAME)(directory, device=device, dtype=dtype)
    config = load_config(directory)
    tensors = read_tensors(directory, device)
    with torch.device("meta"):
        model = PlamoForCausalLM(config)
    if config.tie_word_embeddings and TIED_OUTPUT in tensors:
        embedding = tensors.get("model.embed_tokens.weight")
        if embedding is not None and tensors[TIED_OUTPUT].shape == embedding.shape:
            del tensors[TIED_OUTPUT]
    check_tensors(model, tensors, source=str(directory))
    model.load_state_dict(tensors, assign=True)
    return model if dtype is None else model.to(dtype)


def quantized_loader(quantization: Any, source: Path) -> Any:
    """The registered loader for a quantization_config's quant_method; an unknown method names the known ones."""
    method = quantization.get("quant_method") if isinstance(quantization, dict) else None
    if method not in QUANTIZED_LOADERS:
        raise CheckpointError(f"{source}: quantization_config has quant_method {method!r}; this lab loads "
                              f"{sorted(QUANTIZED_LOADERS)}")
    module, _, function = QUANTIZED_LOADERS[method].partition(":")
    return getattr(importlib.import_module(module), function)
