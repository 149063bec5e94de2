"""The trainer: the training step and its method interface, metrics, checkpoints and run
records. Importing it needs no DALI."""

from __future__ import annotations

from dali_aug.train._checkpoint import CheckpointWriteError, check_resume, load_checkpoint
from dali_aug.train._generators import DeviceGenerators
from dali_aug.train._method import (
    Forward,
    LoaderNeeds,
    Loss,
    Method,
    Step,
    frozen_norm,
    method_key,
)
from dali_aug.train._metrics import accuracy, average_precision, multilabel_metrics
from dali_aug.train._trainer import Trainer, model_parts, write_metrics

__all__ = [
    "CheckpointWriteError",
    "DeviceGenerators",
    "Forward",
    "LoaderNeeds",
    "Loss",
    "Method",
    "Step",
    "Trainer",
    "accuracy",
    "average_precision",
    "check_resume",
    "frozen_norm",
    "load_checkpoint",
    "method_key",
    "model_parts",
    "multilabel_metrics",
    "write_metrics",
]
