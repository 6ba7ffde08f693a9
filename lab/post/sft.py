"""Supervised fine-tuning on prompt + response with the loss on response tokens only.

A sequence is [BOS] prompt response [EOS], the prompt and the response tokenised apart so the boundary is exact.
Targets are the next tokens with -100 (the model loss's ignore index) wherever the next token is still prompt, so
the model learns to answer, not to ask. Rows are right-padded to the longest in the batch (padding targets -100);
the batch of step t is drawn from rng(seed, t), so training resumes exactly (see `lab.lm_train.train_steps`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lab.lm_train import LMTrainConfig, train_steps
from lab.models.plamo.model import IGNORE_INDEX
from lab.core.rundir import RunDir


@dataclass
class SFTConfig:
    """AdamW with warm-up and cosine decay; sequences longer than `max_len` tokens keep their first `max_len`."""

    steps: int = 200
    batch_size: int = 16
    max_len: int = 160
    lr: float = 1e-3
    min_lr_frac: float = 0.1
    weight_decay: float = 0.0
    warmup_frac: float = 0.05
    grad_clip: float = 1.0
    checkpoint_every: int = 100
    log_every: int = 25

    def train_config(self) -> LMTrainConfig:
        return LMTrainConfig(steps=self.steps, batch_size=self.batch_size, seq_len=self.max_len, lr=self.lr,
                             min_lr_frac=self.min_lr_frac, weight_decay=self.weight_decay,
                             warmup_frac=self.warmup_frac, grad_clip=self.grad_clip,
                             checkpoint_every=self.checkpoint_every, log_every=self.log_every)


@dataclass(frozen=True)
class MaskedSequence:
    """inputs and targets of one sequence; targets are -100 on every position that predicts a prompt token."""

    inputs: np.ndarray  # int64 (L,)
    targets: np.ndarray  # int64 (L,)


def encode_example(tokenizer: Any, prompt: str, response: str, *, bos: int, eos: int, max_len: int) -> MaskedSequence:
    """[BOS] prompt response [EOS] -> inputs, targets with the prompt masked; cut to `max_len` inputs."""
    prompt_ids, response_ids = tokenizer.encode(prompt), tokenizer.encode(response)
    if not response_ids:
        raise ValueError(f"empty response for prompt {prompt!r}")
    sequence = np.asarray([bos, *prompt_ids, *response_ids, eos], dtype=np.int64)[: max_len + 1]
    if len(sequence) <= len(prompt_ids) + 1:
        raise ValueError(f"max_len {max_len} leaves no response token after a prompt of {len(prompt_ids)} tokens "
                         f"({prompt[:40]!r}...); raise max_len")
    targets = sequence[1:].copy()
    targets[: len(prompt_ids)] = IGNORE_INDEX
    return MaskedSequence(sequence[:-1], targets)


def pad_batch(rows: Sequence[MaskedSequence], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad to the longest row: inputs with `pad`, targets with -100 (a causal model never looks ahead)."""
    width = max(len(r.inputs) for r in rows)
    inputs = torch.full((len(rows), width), pad, dtype=torch.long)
    targets = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    for i, row in enumerate(rows):
        inputs[i, : len(row.inputs)] = torch.from_numpy(row.inputs)
        targets[i, : len(row.targets)] = torch.from_numpy(row.targets)
    return inputs, targets


def batch_rows(count: int, step: int, batch_size: int, seed: int) -> np.ndarray:
    """The row indices of step `step`: a pure function of (seed, step)."""
    return np.random.default_rng([seed, step]).integers(0, count, size=batch_size)


def pad_id(model: Any) -> int:
    config = model.config
    return config.pad_token_id if config.pad_token_id is not None else config.eos_token_id


def train_sft(model: Any, tokenizer: Any, examples: Sequence[Any], config: SFTConfig, run: RunDir, *, seed: int,
              device: torch.device = torch.device("cpu"), dtype: str = "float32", progress: bool = False
              ) -> dict[str, Any]:
    """Fine-tune `model` on `examples` (objects with `.prompt` and `.completion`), resuming from `run`."""
    if not examples:
        raise ValueError("SFT needs at least one example")
    bos, eos = model.config.bos_token_id, model.config.eos_token_id
    rows = [encode_example(tokenizer, e.prompt, e.completion, bos=bos, eos=eos, max_len=config.max_len)
            for e in examples]
    pad = pad_id(model)

    def step_loss(step: int) -> tuple[torch.Tensor, dict[str, float]]:
        inputs, targets = pad_batch([rows[i] for i in batch_rows(len(rows), step, config.batch_size, seed)], pad)
        return model(inputs.to(device), targets.to(device)).loss, {}

    stats = train_steps(model, step_loss, config.train_config(), run, device=device, dtype=dtype, desc="sft",
                        progress=progress)
    response_tokens = int(sum((r.targets != IGNORE_INDEX).sum() for r in rows))
    return {**stats, "examples": len(rows), "response_tokens": response_tokens}
