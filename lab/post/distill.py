"""Knowledge distillation: train a (pruned) student to match a frozen teacher's next-token distribution.

loss = kl_weight * T^2 * KL(teacher_T || student_T) + (1 - kl_weight) * cross-entropy on the data, where _T is the
softmax at temperature T (T^2 keeps the gradient scale independent of T, as in Hinton et al.). Positions whose
target is ignored (-100: a window crossing a document boundary) count in neither term. Batches, the learning-rate
schedule and the optimizer are those of `lab.lm_train.train_lm`, so a distilled run and a from-scratch run on
the same stream, seed and steps see exactly the same tokens.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from lab.lm_train import LMTrainConfig, TokenStream, autocast, lr_at, stream_batch
from lab.models.plamo.model import IGNORE_INDEX
from lab.rundir import RunDir
from lab.train import NonFiniteLossError


@dataclass
class DistillConfig:
    """Temperature of both softmaxes and the weight of the KL term (1 - kl_weight goes to the data's LM loss)."""

    temperature: float = 2.0
    kl_weight: float = 0.5

    def validate(self, prefix: str = "distill") -> None:
        if not self.temperature > 0:
            raise ValueError(f"{prefix}.temperature must be positive, got {self.temperature}")
        if not 0 <= self.kl_weight <= 1:
            raise ValueError(f"{prefix}.kl_weight must be in [0, 1], got {self.kl_weight}")


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
                      temperature: float, kl_weight: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, kl, ce), each a mean over the positions whose target is not -100; kl is at `temperature`."""
    valid = (targets != IGNORE_INDEX).reshape(-1)
    vocab = student_logits.shape[-1]
    student = student_logits.float().reshape(-1, vocab)[valid]
    teacher = teacher_logits.float().reshape(-1, vocab)[valid]
    log_student = F.log_softmax(student / temperature, dim=-1)
    log_teacher = F.log_softmax(teacher / temperature, dim=-1)
    kl = F.kl_div(log_student, log_teacher, log_target=True, reduction="batchmean")
    ce = F.cross_entropy(student, targets.reshape(-1)[valid])
    return kl_weight * temperature**2 * kl + (1 - kl_weight) * ce, kl, ce


def distill(student: Any, teacher: Any, stream: TokenStream, train: LMTrainConfig, config: DistillConfig,
            run: RunDir | None = None, *, seed: int, device: torch.device = torch.device("cpu"),
            dtype: str = "float32", desc: str = "distill") -> dict[str, Any]:
    """Train `student` on `stream` against the frozen `teacher` for `train.steps` steps (not resumable)."""
    train.validate("distill.train")
    config.validate()
    if student.config.vocab_size != teacher.config.vocab_size:
        raise ValueError(f"student vocabulary {student.config.vocab_size} != teacher's {teacher.config.vocab_size}")
    student.to(device).train()
    teacher.to(device).eval()
    teacher.requires_grad_(False)
    optimizer = torch.optim.AdamW(student.optimizer_param_groups(train.weight_decay), lr=train.lr, betas=(0.9, 0.95))
    started, tokens = time.perf_counter(), 0
    first = last = None
    for step in range(train.steps):
        inputs, targets, documents = (t.to(device) for t in stream_batch(stream, step, train.batch_size,
                                                                          train.seq_len, seed))
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, train)
        with autocast(device, dtype):
            with torch.no_grad():
                teacher_logits = teacher(inputs, document_ids=documents).logits
            student_logits = student(inputs, document_ids=documents).logits
        loss, kl, ce = distillation_loss(student_logits, teacher_logits, targets, config.temperature,
                                         config.kl_weight)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"{desc}: loss is {loss.item()} at step {step}; lower the learning rate")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if train.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(student.parameters(), train.grad_clip)
        optimizer.step()
        last = {"loss": loss.item(), "kl": kl.item(), "ce": ce.item()}
        first = first or last
        tokens += inputs.numel()
        if run is not None and ((step + 1) % train.log_every == 0 or step + 1 == train.steps):
            run.log_metrics({"stage": desc, "step": step + 1, **last, "lr": lr_at(step, train)})
    seconds = time.perf_counter() - started
    assert first is not None and last is not None
    return {"steps": train.steps, "train_tokens": tokens, "train_seconds": seconds,
            "first_kl": first["kl"], "last_kl": last["kl"], "first_ce": first["ce"], "last_ce": last["ce"]}
