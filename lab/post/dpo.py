"""Direct Preference Optimisation (Rafailov et al. 2023) against a frozen reference model.

loss = -log sigmoid(beta * ((log pi(y_c|x) - log ref(y_c|x)) - (log pi(y_r|x) - log ref(y_r|x)))), with each log
probability summed over the response tokens only (the prompt is masked exactly as in SFT). The reference is the
SFT model, frozen: no gradients, eval mode, its log-probs computed under no_grad. At the start the policy is the
reference, so every margin is 0 and the loss is log 2.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from lab.lm_train import LMTrainConfig, train_steps
from lab.models.plamo.model import IGNORE_INDEX
from lab.post.sft import MaskedSequence, batch_rows, encode_example, pad_batch, pad_id
from lab.core.rundir import RunDir


@dataclass
class DPOConfig:
    """beta scales the implicit reward; small learning rates, as DPO starts from a trained model."""

    beta: float = 0.1
    steps: int = 100
    batch_size: int = 8  # pairs per step (2 * batch_size sequences)
    max_len: int = 160
    lr: float = 2e-4
    min_lr_frac: float = 0.1
    weight_decay: float = 0.0
    warmup_frac: float = 0.1
    grad_clip: float = 1.0
    checkpoint_every: int = 100
    log_every: int = 25

    def validate(self) -> None:
        if not self.beta > 0:
            raise ValueError(f"dpo.beta must be positive, got {self.beta}")

    def train_config(self) -> LMTrainConfig:
        return LMTrainConfig(steps=self.steps, batch_size=self.batch_size, seq_len=self.max_len, lr=self.lr,
                             min_lr_frac=self.min_lr_frac, weight_decay=self.weight_decay,
                             warmup_frac=self.warmup_frac, grad_clip=self.grad_clip,
                             checkpoint_every=self.checkpoint_every, log_every=self.log_every)


def sequence_logprobs(model: Any, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(b,) sum of log p(target) over the positions whose target is not -100."""
    logits = model(inputs).logits.float()
    mask = targets != IGNORE_INDEX
    picked = torch.gather(F.log_softmax(logits, dim=-1), -1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (picked * mask).sum(dim=-1)


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, reference_chosen: torch.Tensor,
             reference_rejected: torch.Tensor, beta: float) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean DPO loss over pairs, and the implicit rewards / preference accuracy for logging."""
    chosen_reward = beta * (policy_chosen - reference_chosen)
    rejected_reward = beta * (policy_rejected - reference_rejected)
    margin = chosen_reward - rejected_reward
    loss = -F.logsigmoid(margin).mean()
    stats = {"reward_chosen": chosen_reward.mean().item(), "reward_rejected": rejected_reward.mean().item(),
             "reward_accuracy": (margin > 0).float().mean().item()}
    return loss, stats


def frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A deep copy in eval mode with every parameter's requires_grad off: the DPO reference."""
    reference = copy.deepcopy(model).eval()
    reference.requires_grad_(False)
    return reference


def encode_pairs(tokenizer: Any, pairs: Sequence[Any], *, bos: int, eos: int, max_len: int
                 ) -> list[tuple[MaskedSequence, MaskedSequence]]:
    """(chosen, rejected) masked sequences of objects with `.example.prompt`, `.chosen`, `.rejected`."""
    def encode(prompt: str, response: str) -> MaskedSequence:
        return encode_example(tokenizer, prompt, response, bos=bos, eos=eos, max_len=max_len)

    return [(encode(p.example.prompt, p.chosen), encode(p.example.prompt, p.rejected)) for p in pairs]


def pair_logprobs(model: Any, rows: Sequence[tuple[MaskedSequence, MaskedSequence]], pad: int,
                  device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed response log-probs of the chosen and the rejected sequences, in one forward pass."""
    inputs, targets = pad_batch([c for c, _ in rows] + [r for _, r in rows], pad)
    logprobs = sequence_logprobs(model, inputs.to(device), targets.to(device))
    return logprobs[: len(rows)], logprobs[len(rows) :]


def train_dpo(policy: Any, reference: Any, tokenizer: Any, pairs: Sequence[Any], config: DPOConfig, run: RunDir, *,
              seed: int, device: torch.device = torch.device("cpu"), dtype: str = "float32",
              progress: bool = False) -> dict[str, Any]:
    """Optimise `policy` on preference pairs against the frozen `reference`, resuming from `run`."""
    config.validate()
    if not pairs:
        raise ValueError("DPO needs at least one preference pair")
    if policy.config != reference.config:
        raise ValueError("the DPO policy and reference must share one architecture (their configs differ)")
    if any(p.requires_grad for p in reference.parameters()):
        raise ValueError("the DPO reference must be frozen (use lab.post.dpo.frozen_copy)")
    reference.to(device).eval()
    bos, eos = policy.config.bos_token_id, policy.config.eos_token_id
    rows = encode_pairs(tokenizer, pairs, bos=bos, eos=eos, max_len=config.max_len)
    pad = pad_id(policy)

    def step_loss(step: int) -> tuple[torch.Tensor, dict[str, float]]:
        batch = [rows[i] for i in batch_rows(len(rows), step, config.batch_size, seed)]
        with torch.no_grad():
            reference_chosen, reference_rejected = pair_logprobs(reference, batch, pad, device)
        policy_chosen, policy_rejected = pair_logprobs(policy, batch, pad, device)
        return dpo_loss(policy_chosen, policy_rejected, reference_chosen, reference_rejected, config.beta)

    stats = train_steps(policy, step_loss, config.train_config(), run, device=device, dtype=dtype, desc="dpo",
                        progress=progress)
    return {**stats, "pairs": len(rows), "beta": config.beta}
