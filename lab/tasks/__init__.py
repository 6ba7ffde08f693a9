"""What a model is trained to do: fine-tuning tasks on users' real datasets (classification, detection,
segmentation; one file each, registered in TASKS) and the 3D-scene pre-training tasks (`pretrain`)."""

from lab.tasks import classification, detection, segmentation  # noqa: F401  (register the tasks)
from lab.tasks.base import TASKS
from lab.tasks.finetune import TaskFinetuneConfig, TaskTrainConfig


__all__ = ["TASKS", "TaskFinetuneConfig", "TaskTrainConfig"]
