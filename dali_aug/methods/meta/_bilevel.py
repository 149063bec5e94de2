"""The meta-gradient of MetaAugment's bilevel step (arXiv:2012.12076, Eq. 2-3), as functions
of closures so that a toy model and the trainer's step share them.

With normalised weights ``P~_i(theta)`` (the feature input detached, so P does not depend on
w), the virtual step is ``w^ = w - alpha * sum_i P~_i grad_w L_i(w)`` and the meta-gradient is

    dL_val/dtheta = -alpha * sum_i (g_val . grad_w L_i(w)) dP~_i/dtheta,
    dL_val/dalpha = -sum_i P~_i (g_val . grad_w L_i(w)),          g_val = grad_w L_val(w^).

* :func:`exact_meta_grads` differentiates ``L_val(w^(theta, alpha))`` through the virtual
  step (``torch.autograd.grad(..., create_graph=True)``): the paper's passes. No Hessian of
  L is formed; the double backward only carries the per-sample weights.
* :func:`fast_meta_grads` uses the identity above with two approximations: ``g_val`` is
  taken at ``w - alpha * G_prev`` (the previous real step's gradient instead of this batch's
  weighted gradient, which would cost one more backward) and the per-sample dot products
  ``g_val . grad_w L_i`` are a central finite difference along ``g_val`` (DARTS,
  arXiv:1806.09055: step ``fd_eps / ||g_val||``), two no-grad forwards of the training batch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch

__all__ = ["MetaGrads", "exact_meta_grads", "fast_meta_grads"]

Params = Mapping[str, torch.Tensor]
#: substituted weights -> the mean validation loss (a scalar)
ValLoss = Callable[[dict[str, torch.Tensor]], torch.Tensor]
#: substituted weights -> the per-sample training losses [N]
TrainLosses = Callable[[dict[str, torch.Tensor]], torch.Tensor]
MetaGrads = tuple[list[torch.Tensor], torch.Tensor]


def _fill(grads: Sequence[torch.Tensor | None], like: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    return [torch.zeros_like(t) if g is None else g for g, t in zip(grads, like, strict=True)]


def exact_meta_grads(
    params: Params,
    train_losses: torch.Tensor,
    weights: torch.Tensor,
    alpha: torch.Tensor,
    val_loss: ValLoss,
    meta: Sequence[torch.Tensor],
) -> MetaGrads:
    """The gradient of ``L_val(w^)`` with respect to ``meta``, through the virtual step.

    Args:
        params: the task weights w by name (leaves of ``train_losses``' graph).
        train_losses: [N] per-sample training losses at w (their graph is kept: the real
            step back-propagates it afterwards).
        weights: [N] normalised weights P~ (a graph to theta, none to w).
        alpha: the scalar virtual learning rate (a graph to its parametrisation).
        val_loss: the mean validation loss at substituted weights.
        meta: the tensors to differentiate (theta's tensors and alpha's parameter).

    Returns:
        (one gradient per ``meta`` tensor, the detached validation loss at w^).
    """
    names = [n for n, p in params.items() if p.requires_grad]
    inner = (weights.to(train_losses.dtype) * train_losses).sum()
    grads = torch.autograd.grad(
        inner,
        [params[n] for n in names],
        create_graph=True,
        retain_graph=True,
        allow_unused=True,
    )
    virtual = {
        n: params[n] - alpha.to(params[n].dtype) * g
        for n, g in zip(names, grads, strict=True)
        if g is not None
    }
    lv = val_loss(virtual)
    out = torch.autograd.grad(lv, list(meta), allow_unused=True)
    return _fill(out, meta), lv.detach()


def fast_meta_grads(
    params: Params,
    weights: torch.Tensor,
    alpha: torch.Tensor,
    val_loss: ValLoss,
    train_losses_at: TrainLosses,
    meta: Sequence[torch.Tensor],
    *,
    previous: Params | None = None,
    fd_eps: float = 0.01,
) -> MetaGrads:
    """The meta-gradient from per-sample dot products (see the module docstring).

    Args:
        params: the task weights w by name.
        weights: [N] normalised weights P~ (a graph to theta).
        alpha: the scalar virtual learning rate (a graph to its parametrisation).
        val_loss: the mean validation loss at substituted weights.
        train_losses_at: the per-sample training losses of this batch at substituted weights
            (called twice under ``torch.no_grad``).
        meta: the tensors to differentiate.
        previous: the gradient that stands in for this batch's weighted gradient in the
            virtual step, by name (the previous real step's); None: ``g_val`` at w.
        fd_eps: the finite-difference step along ``g_val``, relative to its norm.

    Returns:
        (one gradient per ``meta`` tensor, the detached validation loss where g_val was taken).
    """
    names = [n for n, p in params.items() if p.requires_grad]
    a = alpha.detach()
    point: dict[str, torch.Tensor] = {}
    for n in names:
        p = params[n].detach()
        if previous is not None and n in previous:
            p = p - a.to(p.dtype) * previous[n].to(p.dtype)
        point[n] = p.detach().requires_grad_(True)
    lv = val_loss(point)
    g_val = _fill(
        torch.autograd.grad(lv, list(point.values()), allow_unused=True), list(point.values())
    )
    norm = torch.sqrt(sum((g.double() ** 2).sum() for g in g_val))  # type: ignore[arg-type]
    h = fd_eps / norm.clamp_min(1e-12)
    with torch.no_grad():
        plus = {n: params[n] + (h * g).to(g.dtype) for n, g in zip(names, g_val, strict=True)}
        minus = {n: params[n] - (h * g).to(g.dtype) for n, g in zip(names, g_val, strict=True)}
        dots = (train_losses_at(plus).double() - train_losses_at(minus).double()) / (2 * h)
        dots = torch.where(norm > 0, dots, torch.zeros_like(dots))
    surrogate = -(alpha * (weights.double() * dots).sum())
    out = torch.autograd.grad(surrogate, list(meta), allow_unused=True)
    return _fill(out, meta), lv.detach()
