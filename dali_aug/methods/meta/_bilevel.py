"""The meta-gradient of MetaAugment's bilevel step (arXiv:2012.12076, Eq. 2-3), as functions
of closures so that a toy model and the trainer's step share them.

With normalised weights ``P~_i(theta)`` (the feature input detached, so P does not depend on
w), the virtual step is ``w^ = w - alpha * sum_i P~_i grad_w L_i(w)`` and the meta-gradient is

    dL_val/dtheta = -alpha * sum_i d_i dP~_i/dtheta,
    dL_val/dalpha = -sum_i P~_i d_i,
    d_i = g_val . grad_w L_i(w),      g_val = grad_w L_val(w^).

* :func:`exact_meta_grads` computes this identity exactly: one backward of the weighted
  training loss for ``w^`` (no ``create_graph``), the validation gradient at ``w^``, and the
  per-sample dot products ``d_i`` as one forward-mode JVP of the per-sample training losses
  along ``g_val`` (:mod:`torch.autograd.forward_ad`); then a backward through the policy net alone.
  It is the same gradient as :func:`unrolled_meta_grads` (test: equal in float64, and both
  match a central finite difference of ``L_val(w^(theta, alpha))``).
* :func:`unrolled_meta_grads` is the paper's literal form: differentiate
  ``L_val(w^(theta, alpha))`` through the virtual step (``torch.autograd.grad(...,
  create_graph=True)``, then a double backward). Kept as the reference and as
  ``MetaConfig(exact_form="unrolled")``; on CPU its double backward through the convolutions
  costs about twice the JVP.
* :func:`fast_meta_grads` uses the identity with a finite difference for ``d_i`` in place of
  the JVP (one no-grad forward instead of a forward-mode pass that costs about four), and
  optionally a second approximation: ``g_val`` taken at ``w - alpha * G_prev`` (the previous
  real step's gradient instead of this batch's weighted gradient, saving one backward;
  ``MetaConfig(fast_virtual="previous")``; on ResNet-18 this changes ``g_val`` so much that
  the theta-gradient's cosine to exact falls to about 0.4 or below).
  ``d_i`` is a finite difference along
  ``g_val`` (DARTS, arXiv:1806.09055) with step ``h = fd_eps * ||w|| / ||g_val||`` (a
  perturbation of relative size ``fd_eps`` of the weights): ``forward`` (one no-grad forward
  of the training batch at ``w + h g_val``, against the step's own losses at w) or
  ``central`` (two, at ``w +- h g_val``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Literal

import torch
import torch.autograd.forward_ad as fwd_ad

__all__ = [
    "FiniteDifference",
    "MetaGrads",
    "exact_meta_grads",
    "fast_meta_grads",
    "jvp_dots",
    "unrolled_meta_grads",
    "weighted_grad",
]

Params = Mapping[str, torch.Tensor]
#: substituted weights -> the mean validation loss (a scalar)
ValLoss = Callable[[dict[str, torch.Tensor]], torch.Tensor]
#: substituted weights -> the per-sample training losses [N]
TrainLosses = Callable[[dict[str, torch.Tensor]], torch.Tensor]
MetaGrads = tuple[list[torch.Tensor], torch.Tensor]
FiniteDifference = Literal["forward", "central"]


def _fill(grads: Sequence[torch.Tensor | None], like: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    return [torch.zeros_like(t) if g is None else g for g, t in zip(grads, like, strict=True)]


def _global_norm(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """The L2 norm of all ``tensors`` together, as a float64 scalar (computed in their own
    dtype by fused per-tensor norms: no float64 copy of the weights)."""
    if not tensors:
        return torch.zeros((), dtype=torch.float64)
    return torch.nn.utils.get_total_norm(list(tensors)).double()


def _names(params: Params) -> list[str]:
    return [n for n, p in params.items() if p.requires_grad]


def _surrogate_grads(
    weights: torch.Tensor, alpha: torch.Tensor, dots: torch.Tensor, meta: Sequence[torch.Tensor]
) -> list[torch.Tensor]:
    """Gradients of ``-alpha * sum_i P~_i d_i`` (d detached) w.r.t. ``meta``: the identity."""
    surrogate = -(alpha.double() * (weights.double() * dots.detach().double()).sum())
    return _fill(torch.autograd.grad(surrogate, list(meta), allow_unused=True), meta)


def weighted_grad(
    params: Params, train_losses: torch.Tensor, weights: torch.Tensor
) -> dict[str, torch.Tensor]:
    """``sum_i P~_i grad_w L_i(w)`` by name (the virtual step's direction; the weights
    detached, the losses' graph retained for the real step)."""
    names = _names(params)
    leaves = [params[n] for n in names]
    inner = (weights.detach().to(train_losses.dtype) * train_losses).sum()
    grads = _fill(torch.autograd.grad(inner, leaves, retain_graph=True, allow_unused=True), leaves)
    return dict(zip(names, grads, strict=True))


def jvp_dots(
    params: Params,
    direction: Sequence[torch.Tensor],
    train_losses_at: TrainLosses,
) -> torch.Tensor:
    """``d_i = direction . grad_w L_i(w)`` for every sample, exactly, as one forward-mode JVP
    of the per-sample losses (``direction`` in the order of the parameters that require
    grad), with :mod:`torch.autograd.forward_ad` dual tensors under ``no_grad`` (about 3.3
    no-grad forwards on the small CNN on CPU, against 5.3 for :func:`torch.func.jvp`)."""
    names = _names(params)
    with torch.no_grad(), fwd_ad.dual_level():
        duals = {
            n: fwd_ad.make_dual(params[n].detach(), d.detach().to(params[n].dtype))
            for n, d in zip(names, direction, strict=True)
        }
        out = fwd_ad.unpack_dual(train_losses_at(duals))
        # no tangent: the losses do not depend on the weights
        tangent = torch.zeros_like(out.primal) if out.tangent is None else out.tangent
    return tangent.detach().clone()


def exact_meta_grads(
    params: Params,
    train_losses: torch.Tensor,
    weights: torch.Tensor,
    alpha: torch.Tensor,
    val_loss: ValLoss,
    train_losses_at: TrainLosses,
    meta: Sequence[torch.Tensor],
) -> MetaGrads:
    """The exact gradient of ``L_val(w^)`` with respect to ``meta`` from the identity in the
    module docstring (no ``create_graph``; the dot products by a JVP).

    Args:
        params: the task weights w by name (leaves of ``train_losses``' graph).
        train_losses: [N] per-sample training losses at w (their graph is kept: the real
            step back-propagates it afterwards).
        weights: [N] normalised weights P~ (a graph to theta, none to w).
        alpha: the scalar virtual learning rate (a graph to its parametrisation).
        val_loss: the mean validation loss at substituted weights.
        train_losses_at: the per-sample training losses of the same batch at substituted
            weights, the same function as ``train_losses`` (run once under a JVP).
        meta: the tensors to differentiate (theta's tensors and alpha's parameter).

    Returns:
        (one gradient per ``meta`` tensor, the detached validation loss at w^).
    """
    names = _names(params)
    leaves = [params[n] for n in names]
    grads = weighted_grad(params, train_losses, weights)
    minus_a = -alpha.detach()
    virtual = {  # w - alpha * g in one fused pass per tensor
        n: torch.addcmul(p.detach(), grads[n], minus_a.to(p.dtype)).requires_grad_(True)
        for n, p in zip(names, leaves, strict=True)
    }
    lv = val_loss(virtual)
    g_val = _fill(
        torch.autograd.grad(lv, list(virtual.values()), allow_unused=True), list(virtual.values())
    )
    dots = jvp_dots(params, g_val, train_losses_at)
    return _surrogate_grads(weights, alpha, dots, meta), lv.detach()


def unrolled_meta_grads(
    params: Params,
    train_losses: torch.Tensor,
    weights: torch.Tensor,
    alpha: torch.Tensor,
    val_loss: ValLoss,
    meta: Sequence[torch.Tensor],
) -> MetaGrads:
    """The gradient of ``L_val(w^)`` with respect to ``meta``, through the virtual step
    (the paper's passes; arguments as :func:`exact_meta_grads`)."""
    names = _names(params)
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
    fd_eps: float = 1e-4,
    scheme: FiniteDifference = "central",
    losses_at_w: torch.Tensor | None = None,
) -> MetaGrads:
    """The meta-gradient from per-sample dot products (see the module docstring).

    Args:
        params: the task weights w by name.
        weights: [N] normalised weights P~ (a graph to theta).
        alpha: the scalar virtual learning rate (a graph to its parametrisation).
        val_loss: the mean validation loss at substituted weights.
        train_losses_at: the per-sample training losses of this batch at substituted weights
            (called under ``torch.no_grad``: once for ``forward``, twice for ``central``).
        meta: the tensors to differentiate.
        previous: the gradient of the virtual step by name: this batch's weighted gradient
            (:func:`weighted_grad`: then only the dot products are approximate) or a stand-in
            (the previous real step's); None: ``g_val`` at w.
        fd_eps: the size of the perturbation ``h * g_val`` relative to ``||w||``.
        scheme: ``forward`` (one-sided, against ``losses_at_w``) or ``central``.
        losses_at_w: [N] the training losses at w of the same function (the step's
            forward); required by ``forward``.

    Returns:
        (one gradient per ``meta`` tensor, the detached validation loss where g_val was taken).
    """
    if scheme not in ("forward", "central"):
        raise ValueError(f"fast_meta_grads: scheme={scheme!r}; use 'forward' or 'central'")
    if scheme == "forward" and losses_at_w is None:
        raise ValueError("fast_meta_grads: scheme='forward' needs losses_at_w (the losses at w)")
    names = _names(params)
    a = alpha.detach()
    point: dict[str, torch.Tensor] = {}
    for n in names:
        p = params[n].detach()
        if previous is not None and n in previous:
            p = torch.addcmul(p, previous[n].to(p.dtype), -a.to(p.dtype))
        point[n] = p.detach().requires_grad_(True)
    lv = val_loss(point)
    g_val = _fill(
        torch.autograd.grad(lv, list(point.values()), allow_unused=True), list(point.values())
    )
    with torch.no_grad():
        weights_w = [params[n].detach() for n in names]
        norm = _global_norm(g_val)
        h = fd_eps * _global_norm(weights_w).clamp_min(1.0) / norm.clamp_min(1e-30)
        # the perturbed weights in their own dtype (h, a float64 scalar, would promote)
        step = [g * h.to(g.dtype) for g in g_val]
        plus = {n: w + d for n, w, d in zip(names, weights_w, step, strict=True)}
        if scheme == "central":
            minus = {n: w - d for n, w, d in zip(names, weights_w, step, strict=True)}
            diff = train_losses_at(plus).double() - train_losses_at(minus).double()
            dots = diff / (2 * h)
        else:
            assert losses_at_w is not None
            dots = (train_losses_at(plus).double() - losses_at_w.detach().double()) / h
        dots = torch.where(norm > 0, dots, torch.zeros_like(dots))
    return _surrogate_grads(weights, alpha, dots, meta), lv.detach()
