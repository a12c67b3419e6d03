"""Tasks: a model with its train/val/test data. ``digits`` is the built-in default."""

from prunepilot.tasks.base import Task, TaskData
from prunepilot.tasks.builtin import BUILTIN_TASKS, DEFAULT_TASK, builtin_task, digits_datasets, digits_task
from prunepilot.tasks.loading import load_task
from prunepilot.tasks.resnet import SmallResNet

__all__ = [
    "BUILTIN_TASKS",
    "DEFAULT_TASK",
    "SmallResNet",
    "Task",
    "TaskData",
    "builtin_task",
    "digits_datasets",
    "digits_task",
    "load_task",
]
