"""The passkey study (`lab long-context`): what switching PLaMo's sliding-window layers to full attention buys.

A small PLaMo is trained on the passkey task at a short context (sliding-window attention), scored at a long
context with the passkey beyond the window, switched to full attention (`lab.models.plamo.long_context`, which
copies every weight: the window is a mask, not a parameter) and trained briefly at the long context, then scored
again. In the passkey task a few digits follow a marker early in a sequence of random filler, and at the end the
marker appears again and the model must continue with the digits. When the passkey lies beyond the sliding window
only the Mamba state could carry it; full attention can look it up. Digits are distinct, so "find the earlier
occurrence of this token and copy what followed" (an induction head) solves the task exactly. Accuracy is exact
match of all digits with teacher forcing, which equals greedy decoding's exact match.

Training takes its steps on the one loop (`lab.train.engine.run_steps`) with the language models' recipe.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from lab.core.distributed import resolve_device
from lab.core.progress import StageBar
from lab.models.plamo.long_context import switch_to_full_attention
from lab.models.plamo.model import IGNORE_INDEX, PlamoForCausalLM
from lab.models.plamo.registry import create_plamo
from lab.train.engine import Hooks, run_steps
from lab.train.lm import LMTrainConfig, lr_at

MARKER, FIRST_DIGIT = 3, 4  # 0 unk, 1 bos, 2 eos (the PLaMo / sentencepiece ids), then the marker and digits


@dataclass(frozen=True)
class PasskeyTask:
    """Token-level passkey retrieval: [BOS] filler MARKER d1..dk filler MARKER d1..dk."""

    digits: int = 5
    filler_vocab: int = 32

    def __post_init__(self) -> None:
        if not 1 <= self.digits <= 10:
            raise ValueError(f"digits must be in [1, 10] (they are distinct), got {self.digits}")
        if self.filler_vocab < 2:
            raise ValueError(f"filler_vocab must be >= 2, got {self.filler_vocab}")

    @property
    def vocab_size(self) -> int:
        return FIRST_DIGIT + 10 + self.filler_vocab

    def min_context(self) -> int:
        return 2 * (self.digits + 1) + 2

    def batch(self, rng: np.random.Generator, size: int, context: int, min_distance: int = 0
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets), each (size, context); targets are -100 except at the answer digits.

        `min_distance`: every answer position sits at least this many tokens after the digit it must copy
        (the attention window puts the passkey out of a sliding window's reach).
        """
        span = self.digits + 1
        query = context + 1 - span  # index of the second marker in the (context + 1)-token sequence
        # latest passkey marker: before the question, and each answer's digit >= min_distance tokens back
        last_key = min(query - span, query - 1 - min_distance)
        if context < self.min_context() or last_key < 1:
            raise ValueError(f"context {context} cannot hold a {self.digits}-digit passkey {min_distance} tokens "
                             f"before the question (needs context >= {self.min_context() + min_distance})")
        sequences = FIRST_DIGIT + 10 + rng.integers(0, self.filler_vocab, size=(size, context + 1))
        sequences[:, 0] = 1
        keys = rng.integers(1, last_key + 1, size=size)
        answers = np.stack([rng.permutation(10)[: self.digits] for _ in range(size)]) + FIRST_DIGIT
        for row, start in enumerate(keys):
            sequences[row, start] = sequences[row, query] = MARKER
            sequences[row, start + 1 : start + span] = sequences[row, query + 1 : query + span] = answers[row]
        tokens = torch.from_numpy(sequences)
        targets = torch.full((size, context), IGNORE_INDEX, dtype=torch.long)
        targets[:, query:] = tokens[:, query + 1 :]  # predicting each digit from the marker or the digit before
        return tokens[:, :-1].contiguous(), targets


def train_passkey(model: PlamoForCausalLM, task: PasskeyTask, context: int, config: LMTrainConfig, *, seed: int,
                  device: torch.device, progress: bool = False) -> list[float]:
    """`config.steps` steps on fresh passkey batches (step t's batch from (seed, t)) on the one loop: AdamW (betas
    0.9, 0.95) on the model's parameter groups, warm-up + cosine (`lab.train.lm.lr_at`), clipping, NaN/inf ->
    NonFiniteLossError. Returns the loss of every `log_every`-th step (and of the last). `progress`: a step bar."""
    model.to(device)
    optimizer = torch.optim.AdamW(model.optimizer_param_groups(config.weight_decay), lr=config.lr, betas=(0.9, 0.95))
    losses: list[float] = []

    def step_loss(step: int) -> torch.Tensor:
        inputs, targets = task.batch(np.random.default_rng([seed, step]), config.batch_size, context)
        return model(inputs.to(device), targets.to(device)).loss

    def after_step(step: int, lr: float, loss: float | None) -> None:
        if (step + 1) % config.log_every == 0 or step + 1 == config.steps:
            losses.append(loss)

    run_steps(model, optimizer, step_loss, steps=config.steps, lr_at=lambda step: lr_at(step, config),
              desc="passkey training", log_every=config.log_every, grad_clip=config.grad_clip,
              hint="lower the learning rate", hooks=Hooks(after_step=after_step), progress=progress)
    return losses


@torch.no_grad()
def passkey_accuracy(model: PlamoForCausalLM, task: PasskeyTask, context: int, *, examples: int, min_distance: int,
                     seed: int, device: torch.device, batch_size: int = 64) -> dict[str, float]:
    """Exact-match and per-digit accuracy on `examples` fresh sequences (the same ones for every model)."""
    model.to(device).eval()
    rng = np.random.default_rng([seed, 10**6])
    exact = digits = 0
    for first in range(0, examples, batch_size):
        size = min(batch_size, examples - first)
        inputs, targets = task.batch(rng, size, context, min_distance)
        logits = model(inputs.to(device)).logits.cpu()
        scored = targets != IGNORE_INDEX
        correct = (logits.argmax(-1) == targets) & scored
        per_row = correct.sum(1)
        exact += int((per_row == scored.sum(1)).sum())
        digits += int(per_row.sum())
    return {"exact": exact / examples, "digit": digits / (examples * task.digits)}


@dataclass
class LongContextConfig:
    """Sizes for a CPU run in seconds; the defaults are what the test and `lab long-context` use."""

    model: str = "plamo-2-tiny"
    overrides: dict[str, Any] = field(default_factory=lambda: {
        "hidden_size": 48, "num_hidden_layers": 4, "intermediate_size": 96, "num_attention_heads": 4,
        "hidden_size_per_head": 16, "mamba_num_heads": 4, "mamba_d_state": 8, "mamba_chunk_size": 16})
    window: int = 32
    short_context: int = 32
    long_context: int = 128
    digits: int = 5
    filler_vocab: int = 32
    short_steps: int = 300
    long_steps: int = 40
    batch_size: int = 32
    lr: float = 3e-3
    long_lr: float = 1e-3
    eval_examples: int = 200
    control: bool = False  # also continue the sliding-window model at the long context (without the switch)
    seed: int = 0
    device: str = "cpu"

    def validate(self) -> None:
        if not 0 < self.short_context <= self.window < self.long_context:
            raise ValueError(f"need short_context <= window < long_context, got {self.short_context}, {self.window}, "
                             f"{self.long_context}")
        for key in ("short_steps", "long_steps", "batch_size", "eval_examples"):
            if getattr(self, key) <= 0:
                raise ValueError(f"{key} must be positive, got {getattr(self, key)}")


def run_long_context(config: LongContextConfig, progress: bool = False) -> dict[str, Any]:
    """Accuracy of the sliding-window model and of the switched, briefly re-trained one (and their losses).
    `progress`: a bar over the named stages on stderr, with a step bar for each training."""
    config.validate()
    started = time.perf_counter()
    task = PasskeyTask(config.digits, config.filler_vocab)
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    model = create_plamo(config.model, **{**config.overrides, "vocab_size": task.vocab_size,
                                          "attention_window_size": config.window, "full_attention_idx": ()})
    recipe = LMTrainConfig(steps=config.short_steps, batch_size=config.batch_size, seq_len=config.short_context,
                           lr=config.lr, warmup_frac=0.05, log_every=max(1, config.short_steps // 10))
    long_recipe = LMTrainConfig(steps=config.long_steps, batch_size=config.batch_size, seq_len=config.long_context,
                                lr=config.long_lr, warmup_frac=0.1, log_every=max(1, config.long_steps // 10))
    far = config.window  # every digit of the passkey lies outside the window of the answer that needs it
    score = lambda m: passkey_accuracy(m, task, config.long_context, examples=config.eval_examples,  # noqa: E731
                                       min_distance=far, seed=config.seed, device=device)
    stages = [f"train at {config.short_context} tokens", "score", *(["control"] if config.control else []),
              "switch to full attention", f"train at {config.long_context} tokens", "score after the switch"]
    with StageBar("long-context", len(stages), progress) as bar:
        with bar.stage(stages[0]):
            short_losses = train_passkey(model, task, config.short_context, recipe, seed=config.seed, device=device,
                                         progress=progress)
        with bar.stage("score"):
            result: dict[str, Any] = {
                "config": asdict(config), "layer_pattern_before": model.config.layer_pattern,
                "short_context_accuracy": passkey_accuracy(model, task, config.short_context,
                                                           examples=config.eval_examples, min_distance=0,
                                                           seed=config.seed, device=device),
                "before": score(model), "short_losses": short_losses,
            }
        if config.control:
            with bar.stage("control"):
                control = switch_to_full_attention(model, layers=[])  # an identical copy: still sliding-window
                train_passkey(control, task, config.long_context, long_recipe, seed=config.seed + 1, device=device,
                              progress=progress)
                result["control_swa_continued"] = score(control)
        with bar.stage("switch to full attention"):
            switched = switch_to_full_attention(model)
            result["layer_pattern_after"] = switched.config.layer_pattern
            result["switched_untrained"] = score(switched)
        with bar.stage(stages[-2]):
            result["long_losses"] = train_passkey(switched, task, config.long_context, long_recipe,
                                                  seed=config.seed + 1, device=device, progress=progress)
        with bar.stage("score after the switch"):
            result["after"] = score(switched)
    result["seconds"] = time.perf_counter() - started
    return result


def add_long_context_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    defaults = LongContextConfig()
    for name in ("window", "short_context", "long_context", "digits", "short_steps", "long_steps", "batch_size",
                 "eval_examples", "seed"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name))
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--long-lr", type=float, default=defaults.long_lr)
    parser.add_argument("--device", default=defaults.device, help="cpu, cuda or auto")
    parser.add_argument("--control", action="store_true",
                        help="also continue training the sliding-window model at the long context, without the switch")
    parser.add_argument("--out", default=None, help="write the result as JSON here")
    return parser


def run_long_context_cli(args: argparse.Namespace) -> int:
    fields = {k: v for k, v in vars(args).items() if k in LongContextConfig.__dataclass_fields__}
    try:
        result = run_long_context(LongContextConfig(**fields), progress=True)
    except ValueError as error:
        print(f"lab long-context: error: {error}")
        return 2
    print(f"layers {result['layer_pattern_before']} -> {result['layer_pattern_after']} "
          f"(window {args.window}, passkey > {args.window} tokens before the question)")
    rows = [("short context, sliding window", result["short_context_accuracy"]),
            (f"context {args.long_context}, before (sliding window)", result["before"]),
            ("switched to full attention, no training", result["switched_untrained"]),
            (f"switched + {args.long_steps} steps at {args.long_context}", result["after"])]
    if "control_swa_continued" in result:
        rows.append((f"sliding window + {args.long_steps} steps (control)", result["control_swa_continued"]))
    for label, accuracy in rows:
        print(f"  {label:48s} exact {accuracy['exact']:.1%}  digits {accuracy['digit']:.1%}")
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(result, handle, indent=2)
    return 0
