"""Tasks: a model with its train/val/test data. ``digits`` is the built-in default."""

from prunepilot.tasks.base import Task, TaskData
from prunepilot.tasks.digits import DigitsResNet, digits_datasets, digits_task
from prunepilot.tasks.loading import load_task

__all__ = ["DigitsResNet", "Task", "TaskData", "digits_datasets", "digits_task", "load_task"]
