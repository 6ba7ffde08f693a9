"""Any local Hugging Face causal LM in the pfgen harness, sampled by the same `generate` as the lab's PLaMo.

Why an adapter instead of `model.generate`: the harness's sampling (top-p, per-trial seeds, stop strings) is then
identical for both kinds of model, so scores compare. The adapter turns the PLaMo call convention (left-padded ids,
`document_ids` marking real tokens, a cache object) into attention masks, position ids and `past_key_values`.

`transformers` is optional: it is imported only when a Hugging Face folder is loaded, and its absence is an
`HFModelError` naming the folder and the install command. Loading is offline (`local_files_only=True`).
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

TRANSFORMERS_PIN = "transformers==5.24.0"
LAB_MODEL_TYPES = ("plamo2",)  # config.json model_type of checkpoints lab.models.plamo loads itself


class HFModelError(ValueError):
    """A Hugging Face model folder that cannot be used (transformers missing, no tokenizer, unreadable)."""


def read_model_type(directory: Path) -> str | None:
    """model_type of the folder's config.json (None when absent or unreadable: the PLaMo loader reports it)."""
    try:
        data = json.loads((Path(directory) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return data.get("model_type") if isinstance(data, dict) else None


def is_hf_model(directory: Path) -> bool:
    """A folder whose config.json names an architecture that is not ours."""
    model_type = read_model_type(directory)
    return model_type is not None and model_type not in LAB_MODEL_TYPES


def _transformers(directory: Path) -> Any:
    try:
        import transformers
    except ImportError as error:
        raise HFModelError(f"{directory} holds a Hugging Face model ({read_model_type(directory)}); evaluating it "
                           f"needs transformers: pip install {TRANSFORMERS_PIN}") from error
    return transformers


@dataclass
class HFCache:
    """past_key_values plus the attention mask so far (the next step's mask extends it)."""

    past: Any
    mask: torch.Tensor


class HFCausalLM(torch.nn.Module):
    """A transformers causal LM behind the call convention `lab.models.plamo.generate` uses."""

    def __init__(self, model: torch.nn.Module, eos_token_id: int | None, pad_token_id: int | None) -> None:
        super().__init__()
        self.model = model
        vocab = int(model.get_output_embeddings().weight.shape[0])
        pad = pad_token_id if pad_token_id is not None else (eos_token_id if eos_token_id is not None else 0)
        self.config = SimpleNamespace(vocab_size=vocab, eos_token_id=eos_token_id, pad_token_id=pad)
        parameters = inspect.signature(model.forward).parameters
        self._cache_argument = "cache" if "cache" in parameters else "past_key_values"  # renamed in transformers 5
        self._keeps_logits = "logits_to_keep" in parameters

    @property
    def output_weight(self) -> torch.Tensor:
        return self.model.get_output_embeddings().weight

    def forward(self, ids: torch.Tensor, document_ids: torch.Tensor | None = None, use_cache: bool = False,
                cache: HFCache | None = None, last_logits_only: bool = False) -> SimpleNamespace:
        if cache is None:
            mask = torch.ones_like(ids) if document_ids is None else (document_ids != 0).long()
        else:
            mask = torch.cat([cache.mask, torch.ones_like(ids)], dim=1)
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)[:, -ids.shape[1]:]
        extra: dict[str, Any] = {self._cache_argument: None if cache is None else cache.past}
        if last_logits_only and self._keeps_logits:
            extra["logits_to_keep"] = 1
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=use_cache, **extra)
        logits = out.logits[:, -1:] if last_logits_only else out.logits
        past = out.get("cache", out.get("past_key_values"))
        return SimpleNamespace(logits=logits, cache=HFCache(past, mask) if use_cache else None)


class HFTokenizer:
    """encode / decode / vocab_size over a transformers tokenizer (the interface of lab.data.text.Tokenizer)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text)["input_ids"])

    def decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(list(ids), skip_special_tokens=True))


def load_hf_model(directory: Path, device: str | torch.device = "cpu") -> tuple[HFCausalLM, HFTokenizer]:
    """AutoModelForCausalLM + AutoTokenizer from a local folder, offline; errors name the folder."""
    directory = Path(directory)
    transformers = _transformers(directory)
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    except (OSError, ValueError, TypeError) as error:
        raise HFModelError(f"{directory}: no usable tokenizer ({error})") from error
    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(str(directory), local_files_only=True,
                                                                  dtype="auto")
    except (OSError, ValueError, KeyError) as error:
        raise HFModelError(f"{directory}: not a loadable causal LM ({error})") from error
    model.to(device).eval()
    vocab = int(model.get_output_embeddings().weight.shape[0])
    eos = tokenizer.eos_token_id
    if eos is None or not 0 <= eos < vocab:
        config_eos = getattr(model.config, "eos_token_id", None)
        eos = config_eos if isinstance(config_eos, int) and 0 <= config_eos < vocab else None
    return HFCausalLM(model, eos, tokenizer.pad_token_id), HFTokenizer(tokenizer)
