"""Training: one loop (`engine.run_steps`) and the trainings built on it.

- `engine`: the loop (resume, learning rate, AMP, accumulation, NaN stop, clipping, logging, checkpoints).
- `schedule`: a step's learning rate and batch as pure functions of the step.
- `classifier`: image classification (the digits' recipe); `lm`: language models on packed token streams;
  `batch_control`: data-parallel training that follows a global-batch schedule.
"""

from lab.train.classifier import (NORM_MEAN, NORM_STD, TrainConfig, _batch_indices, augment_batch, evaluate, lr_at,
                                  to_tensor, train_classifier)
from lab.train.engine import Hooks, NonFiniteLossError, run_steps
from lab.train.schedule import batch_indices, warmup_cosine

__all__ = ["NORM_MEAN", "NORM_STD", "Hooks", "NonFiniteLossError", "TrainConfig", "augment_batch", "batch_indices",
           "evaluate", "lr_at", "run_steps", "to_tensor", "train_classifier", "warmup_cosine", "_batch_indices"]
