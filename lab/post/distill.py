"""Knowledge distillation: train a (pruned) student to match a frozen teacher's next-token distribution.

loss = kl_weight * T^2 * KL(teacher_T || student_T) + (1 - kl_weight) * cross-entropy on the data, where _T is the
softmax at temperature T (T^2 keeps the gradient scale independent of T, as in Hinton et al.). Positions whose
target is ignored (-100: a window crossing a document boundary) count in neither term. Batches, the learning-rate
schedule, the optimizer and the resumable loop are those of `lab.lm_train.train_lm` (`train_steps`), so a
distilled run and a from-scratch run on the same stream, seed and steps see exactly the same tokens, and a
distillation interrupted after a checkpoint resumes exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from lab.lm_train import LMTrainConfig, TokenStream, stream_batch, train_steps
from lab.models.plamo.model import IGNORE_INDEX
from lab.core.rundir import RunDir


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
            run: RunDir, *, seed: int, device: torch.device = torch.device("cpu"), dtype: str = "float32",
            desc: str = "distill", progress: bool = False) -> dict[str, Any]:
    """Train `student` on `stream` against the frozen `teacher` for `train.steps` steps, resuming from `run`.

    The loop is `lab.lm_train.train_steps`: a run interrupted after a checkpoint continues to the same weights.
    """
    train.validate(f"{desc}.train")
    config.validate()
    if student.config.vocab_size != teacher.config.vocab_size:
        raise ValueError(f"student vocabulary {student.config.vocab_size} != teacher's {teacher.config.vocab_size}")
    teacher.to(device).eval()
    teacher.requires_grad_(False)
    kept: dict[str, dict[str, float]] = {}  # KL and CE of this call's first and latest step

    def step_loss(step: int) -> tuple[torch.Tensor, dict[str, float]]:
        inputs, targets, documents = (t.to(device) for t in stream_batch(stream, step, train.batch_size,
                                                                          train.seq_len, seed))
        with torch.no_grad():
            teacher_logits = teacher(inputs, document_ids=documents).logits
        student_logits = student(inputs, document_ids=documents).logits
        loss, kl, ce = distillation_loss(student_logits, teacher_logits, targets, config.temperature,
                                         config.kl_weight)
        kept["last"] = {"kl": kl.item(), "ce": ce.item()}
        kept.setdefault("first", kept["last"])
        return loss, kept["last"]

    stats = train_steps(student, step_loss, train, run, device=device, dtype=dtype, desc=desc, progress=progress)
    stats["train_tokens"] = train.steps * train.batch_size * train.seq_len  # the student's, resumed or not
    if kept:  # a call that resumes a finished run takes no step
        stats.update(first_kl=kept["first"]["kl"], last_kl=kept["last"]["kl"], first_ce=kept["first"]["ce"],
                     last_ce=kept["last"]["ce"])
    return stats
