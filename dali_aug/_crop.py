"""The training crops' names (without DALI: the CLI's choices and the Loader's check share
them)."""

from __future__ import annotations

from typing import Literal, get_args

__all__ = ["CROPS", "Crop"]

#: A training crop: random-resized (ImageNet) or pad-and-random-crop (small images).
Crop = Literal["rrc", "pad"]
#: the names it takes
CROPS: tuple[str, ...] = get_args(Crop)
