"""Moved to `lab.train.batch_control` (a training loop belongs to the training layer); kept for one release."""

from lab.train.batch_control import (ScheduleMismatchError, StepRecord, train_batch_controlled,  # noqa: F401
                                     train_on_schedule)
