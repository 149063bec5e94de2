"""dali_aug: a GPU data pipeline (NVIDIA DALI + torch) with learned data augmentation."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
