"""An exponential moving average of a model's weights (timm's ``--model-ema``, ``ModelEmaV3``
semantics without its warm-up): after each optimizer step, every floating-point parameter
and buffer of the average moves as ``ema = decay * ema + (1 - decay) * model``; integer
buffers (batch norm's ``num_batches_tracked``) are copied.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["ModelEma"]


class ModelEma(nn.Module):
    """A frozen copy of ``model`` whose weights follow the model's moving average.

    Args:
        model: the (bare) model; it is copied once, the copy is in eval mode and takes no
            gradients.
        decay: in [0, 1); timm's default 0.9998 (a horizon of about 5000 steps).

    Example:
        >>> ema = ModelEma(model, decay=0.999)
        >>> loss.backward(); optimizer.step(); ema.update(model)
        >>> logits = ema.module(images)
    """

    def __init__(self, model: nn.Module, decay: float = 0.9998) -> None:
        super().__init__()
        if not 0 <= decay < 1:
            raise ValueError(f"decay={decay}; use a value in [0, 1), e.g. 0.9998")
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        self.module.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One step of the average towards ``model`` (same architecture)."""
        ours = self.module.state_dict()
        theirs = model.state_dict()
        if ours.keys() != theirs.keys():
            raise ValueError("the EMA and the model have different state keys: not one model")
        for key, value in ours.items():
            new = theirs[key].detach()
            if value.is_floating_point():
                value.lerp_(new.to(value.dtype), 1.0 - self.decay)
            else:
                value.copy_(new)

    def forward(self, *args: object, **kwargs: object) -> object:
        return self.module(*args, **kwargs)
