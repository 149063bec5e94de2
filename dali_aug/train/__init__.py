"""The trainer: the training step and its method interface, metrics, checkpoints and run
records. Importing it needs no DALI."""

from __future__ import annotations

from dali_aug.train._checkpoint import CheckpointWriteError, check_resume, load_checkpoint
from dali_aug.train._ema import ModelEma
from dali_aug.train._erasing import ErasingConfig, RandomErasingMethod
from dali_aug.train._generators import DeviceGenerators
from dali_aug.train._lamb import Lamb
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
from dali_aug.train._mixup import MixupConfig, MixupMethod, soft_targets
from dali_aug.train._schedule import WarmupCosine
from dali_aug.train._trainer import Trainer, model_parts, write_metrics

__all__ = [
    "Lamb",
    "CheckpointWriteError",
    "DeviceGenerators",
    "ErasingConfig",
    "Forward",
    "LoaderNeeds",
    "Loss",
    "Method",
    "MixupConfig",
    "MixupMethod",
    "ModelEma",
    "RandomErasingMethod",
    "Step",
    "Trainer",
    "WarmupCosine",
    "accuracy",
    "average_precision",
    "check_resume",
    "frozen_norm",
    "load_checkpoint",
    "method_key",
    "model_parts",
    "multilabel_metrics",
    "soft_targets",
    "write_metrics",
]
