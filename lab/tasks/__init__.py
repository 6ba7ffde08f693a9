"""Fine-tuning tasks on users' real datasets: classification, detection, segmentation (one file each)."""

from lab.tasks import classification, detection, segmentation  # noqa: F401  (register the tasks)
from lab.tasks.base import TASKS
from lab.tasks.finetune import TaskFinetuneConfig, TaskTrainConfig, run_task_finetune

__all__ = ["TASKS", "TaskFinetuneConfig", "TaskTrainConfig", "run_task_finetune"]
