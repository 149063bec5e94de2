"""LAMB (You et al., "Large Batch Optimization for Deep Learning: Training BERT in 76
minutes", arXiv:1904.00962) in the NVLAMB form timm's ``--opt lamb`` uses: the gradients
clipped together to a global L2 norm of ``max_grad_norm``, Adam's bias-corrected moments, the
weight decay added to the Adam direction, and the step of each parameter tensor scaled by its
trust ratio ``||w|| / ||update||`` (1 where either norm is 0; tensors without weight decay are
not adapted unless ``always_adapt``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

__all__ = ["Lamb"]


class Lamb(torch.optim.Optimizer):
    """LAMB; the defaults are timm's (lr 1e-3, betas (0.9, 0.999), eps 1e-6, weight decay
    0.01, global gradient clipping at 1.0).

    Args:
        params: parameters or parameter groups.
        lr: learning rate.
        betas: the moments' decay rates.
        eps: added to the second moment's root.
        weight_decay: L2 term added to the update (then scaled by the trust ratio).
        max_grad_norm: the global gradient norm the gradients are scaled down to (None: no
            clipping); ``p.grad`` itself is left as it is.
        trust_clip: cap the trust ratio at 1 (LAMBC).
        always_adapt: the trust ratio also for tensors without weight decay.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.01,
        max_grad_norm: float | None = 1.0,
        trust_clip: bool = False,
        always_adapt: bool = False,
    ) -> None:
        if not lr >= 0:
            raise ValueError(f"Lamb: lr={lr} must be >= 0")
        if not all(0 <= b < 1 for b in betas):
            raise ValueError(f"Lamb: betas={betas} must be in [0, 1)")
        if not eps > 0 or not weight_decay >= 0:
            raise ValueError(f"Lamb: eps={eps} must be > 0 and weight_decay={weight_decay} >= 0")
        if max_grad_norm is not None and not max_grad_norm > 0:
            raise ValueError(f"Lamb: max_grad_norm={max_grad_norm} must be > 0 (or None)")
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "trust_clip": trust_clip,
            "always_adapt": always_adapt,
        }
        super().__init__(params, defaults)
        self.max_grad_norm = max_grad_norm

    def _clip_divisor(self) -> torch.Tensor | None:
        """max(1, global gradient norm / max_grad_norm), or None without clipping."""
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        if self.max_grad_norm is None or not grads:
            return None
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(x) for x in grads]))
        return (norm / self.max_grad_norm).clamp(min=1.0)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        divisor = self._clip_divisor()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad if divisor is None else p.grad / divisor.to(p.grad.device)
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"]
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.mul_(beta1).add_(grad, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                denom = (v / (1 - beta2**t)).sqrt_().add_(group["eps"])
                update = (m / (1 - beta1**t)).div_(denom)
                wd = group["weight_decay"]
                if wd:
                    update.add_(p, alpha=wd)
                if wd or group["always_adapt"]:
                    w_norm, u_norm = p.norm(), update.norm()
                    ratio = torch.where(
                        (w_norm > 0) & (u_norm > 0), w_norm / u_norm, torch.ones_like(w_norm)
                    )
                    if group["trust_clip"]:
                        ratio = ratio.clamp(max=1.0)
                    update.mul_(ratio)
                p.add_(update, alpha=-group["lr"])
        return loss
