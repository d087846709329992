"""Tasks: a loader, a program and a metric per file; `get_task` looks one up by name."""

from bt_core.tasks.base import Splits, Task, get_task, task_names

__all__ = ["Splits", "Task", "get_task", "task_names"]
