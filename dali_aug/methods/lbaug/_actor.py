"""The LB-Aug actor: an MLP from a multi-hot label vector to three factorised categoricals.

LB-Aug (Label-Based AutoAugmentation, Eq. 4 and App. B): ``f_a(y) = (pi(op; y),
pi(p; y), pi(lambda; y))`` where ``pi(op; y)`` is a categorical over the ops and, for every op
``j``, ``pi_j(p; y)`` and ``pi_j(lambda; y)`` are categoricals over 11 apply-probability levels
and 10 magnitude levels. The joint log-probability factorises (Eq. 6)::

    log pi(op=j, p=k, lambda=l; y) = log pi(j; y) + log pi_j(k; y) + log pi_j(l; y)

Levels: apply-probability level ``k`` in ``0..P-1`` means probability ``k / (P - 1)``
(``0, 0.1, ..., 1`` for ``P = 11``); magnitude level ``l`` in ``0..M-1`` means the catalog
level ``(l + 1) * 10 / M`` on the AutoAugment 0-10 scale (``1..10`` for ``M = 10``: a
fraction ``(l + 1) / M`` of the op's maximum, as FAA's normalised magnitudes), with a fair
random sign for signed ops (gap-fill; the paper gives no level values).

Variants (``ActorConfig.variant``, paper Sec. 4): ``h`` (LB-Aug_H, default) learns the op, the
apply probability and the magnitude; ``e`` (LB-Aug_E) learns the op only, with the apply
probability fixed at 0.5 and the magnitude at its maximum ("fixed calling probabilities 0.5
and magnitudes 1": level ``M - 1``, catalog level 10). For ``e`` the probability and magnitude
heads exist but are never used, and the policy's log-probability is ``log pi(op; y)``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import torch
from torch import nn

from dali_aug.kernels import label_sample
from dali_aug.ops import OpParams, apply_params, flip_signs, index, names, random_extras
from dali_aug.video._ops import apply_clip_params

__all__ = [
    "AA_OPS",
    "DEMO_OPS",
    "Variant",
    "Actor",
    "ActorConfig",
    "ActorOutput",
    "applied_probability",
    "apply_ops",
    "check_labels",
    "draw_ops",
    "entropy",
    "joint_log_prob",
    "to_op_params",
]

#: The 16 AutoAugment ops of the LB-Aug search space (the first 16 catalog entries).
AA_OPS: tuple[str, ...] = names()[:16]

#: The AutoAugment ops plus FlipLR/FlipUD: the default of ``dali-aug search lbaug``, so that
#: the actor also decides the horizontal flip (the demo shapes' left/right labels are destroyed
#: by it, arrow_up by FlipUD).
DEMO_OPS: tuple[str, ...] = (*AA_OPS, "FlipLR", "FlipUD")

#: ``h``: LB-Aug_H (op, probability, magnitude learned); ``e``: LB-Aug_E (op only).
Variant = Literal["h", "e"]


@dataclasses.dataclass(frozen=True)
class ActorConfig:
    """The actor's shape (copy with ``dataclasses.replace``).

    Attributes:
        num_labels: width of the multi-hot label vector.
        ops: the op names of the search space (catalog names; no duplicates, no Identity:
            "not applied" is the apply-probability's job).
        hidden: width of the hidden layers.
        depth: number of hidden FC layers, each followed by ReLU and dropout (paper: 3).
        dropout: dropout probability (paper: 0.5).
        prob_levels: apply-probability levels (paper: 11, i.e. 0, 0.1, ..., 1).
        mag_levels: magnitude levels (paper: 10).
        variant: ``h`` (LB-Aug_H) or ``e`` (LB-Aug_E: apply probability 0.5 and the maximum
            magnitude fixed; needs an odd ``prob_levels`` so that 0.5 is a level).
    """

    num_labels: int
    ops: tuple[str, ...] = AA_OPS
    hidden: int = 256
    depth: int = 3
    dropout: float = 0.5
    prob_levels: int = 11
    mag_levels: int = 10
    variant: Variant = "h"

    def __post_init__(self) -> None:
        for field in ("num_labels", "hidden", "depth", "prob_levels", "mag_levels"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"ActorConfig.{field} must be an int, got {value!r}")
        if self.num_labels < 1:
            raise ValueError(f"ActorConfig.num_labels={self.num_labels} must be >= 1")
        if self.hidden < 1 or self.depth < 1:
            raise ValueError(
                f"ActorConfig: hidden={self.hidden} and depth={self.depth} must be >= 1"
            )
        if self.prob_levels < 2 or self.mag_levels < 1:
            raise ValueError(
                f"ActorConfig: prob_levels={self.prob_levels} must be >= 2 and "
                f"mag_levels={self.mag_levels} >= 1"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ActorConfig.dropout={self.dropout} must be in [0, 1)")
        if self.variant not in ("h", "e"):
            raise ValueError(f"ActorConfig.variant={self.variant!r}; use 'h' or 'e'")
        if self.variant == "e" and self.prob_levels % 2 == 0:
            raise ValueError(
                f"ActorConfig: variant 'e' fixes the apply probability at 0.5, which needs an "
                f"odd prob_levels (e.g. 11), got {self.prob_levels}"
            )
        if isinstance(self.ops, str) or not isinstance(self.ops, tuple):
            raise TypeError(f"ActorConfig.ops must be a tuple of op names, got {self.ops!r}")
        if not self.ops:
            raise ValueError("ActorConfig.ops is empty; give at least one op name")
        for name in self.ops:
            index(name)  # ValueError with the valid names
        if "Identity" in self.ops:
            raise ValueError(
                "ActorConfig.ops must not contain 'Identity': an op that is not applied "
                "(apply-probability level 0) already leaves the image unchanged"
            )
        if len(set(self.ops)) != len(self.ops):
            raise ValueError(f"ActorConfig.ops has duplicates: {self.ops}")

    @property
    def num_ops(self) -> int:
        return len(self.ops)

    @property
    def fixed_levels(self) -> tuple[int, int] | None:
        """LB-Aug_E's fixed (apply-probability level, magnitude level): ``((P - 1) / 2,
        M - 1)``, i.e. probability 0.5 and the maximum magnitude; None for ``h``."""
        if self.variant == "e":
            return (self.prob_levels - 1) // 2, self.mag_levels - 1
        return None

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "ops": list(self.ops)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ActorConfig:
        return cls(**{**d, "ops": tuple(d["ops"])})


@dataclasses.dataclass(frozen=True)
class ActorOutput:
    """The actor's logits for a batch of label vectors.

    Attributes:
        op_logits: [N, K] over the ops.
        prob_logits: [N, K, P], row ``j``: over the apply-probability levels of op ``j``.
        mag_logits: [N, K, M], row ``j``: over the magnitude levels of op ``j``.
    """

    op_logits: torch.Tensor
    prob_logits: torch.Tensor
    mag_logits: torch.Tensor


def check_labels(labels: torch.Tensor, num_labels: int) -> torch.Tensor:
    """Validates a multi-hot batch and returns it as float32.

    All-zero rows (an image with no positive label) are valid.

    Raises:
        TypeError: ``labels`` is not a floating/bool/integer tensor.
        ValueError: wrong shape or width, or non-finite values.
    """
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"labels must be a torch.Tensor [N, {num_labels}], got {type(labels)}")
    if labels.dim() != 2:
        raise ValueError(
            f"labels must be multi-hot [N, {num_labels}], got shape {tuple(labels.shape)}; "
            "LB-Aug needs multi-label targets (single-label class ids: one-hot them first)"
        )
    if labels.shape[1] != num_labels:
        raise ValueError(
            f"labels have width {labels.shape[1]} but the actor expects {num_labels} labels; "
            "use an actor searched on this label set"
        )
    if labels.is_complex():
        raise TypeError(f"labels must be real, got {labels.dtype}")
    x = labels.float()
    if not bool(torch.isfinite(x).all()):
        raise ValueError("labels contain NaN or inf; pass multi-hot 0/1 label vectors")
    return x


class Actor(nn.Module):
    """``depth`` x (Linear -> ReLU -> Dropout) then linear heads for the three distributions.

    Args:
        config: the :class:`ActorConfig`.

    Shape:
        input: multi-hot labels [N, C] (float, 0/1; all-zero rows allowed).
        output: :class:`ActorOutput` with [N, K], [N, K, P], [N, K, M] logits.

    Example:
        >>> actor = Actor(ActorConfig(num_labels=10))
        >>> out = actor(torch.zeros(4, 10))
        >>> out.prob_logits.shape
        torch.Size([4, 16, 11])
    """

    catalog_ids: torch.Tensor  # int64 [K] buffer: the catalog id of each op of the space

    def __init__(self, config: ActorConfig) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        width = config.num_labels
        for _ in range(config.depth):
            layers += [nn.Linear(width, config.hidden), nn.ReLU(), nn.Dropout(config.dropout)]
            width = config.hidden
        self.trunk = nn.Sequential(*layers)
        k = config.num_ops
        self.op_head = nn.Linear(width, k)
        self.prob_head = nn.Linear(width, k * config.prob_levels)
        self.mag_head = nn.Linear(width, k * config.mag_levels)
        self.register_buffer(
            "catalog_ids", torch.tensor([index(n) for n in config.ops], dtype=torch.int64)
        )

    def forward(self, labels: torch.Tensor) -> ActorOutput:
        cfg = self.config
        h = self.trunk(check_labels(labels, cfg.num_labels))
        n, k = h.shape[0], cfg.num_ops
        out = ActorOutput(
            self.op_head(h),
            self.prob_head(h).view(n, k, cfg.prob_levels),
            self.mag_head(h).view(n, k, cfg.mag_levels),
        )
        check_logits(out)
        return out


def check_logits(out: ActorOutput) -> None:
    """Raises ValueError if any logit is NaN (e.g. a diverged actor)."""
    for name in ("op_logits", "prob_logits", "mag_logits"):
        if bool(torch.isnan(getattr(out, name)).any()):
            raise ValueError(
                f"the actor produced NaN {name}; the actor diverged or was loaded from a "
                "corrupt checkpoint (lower the actor learning rate or search again)"
            )


def joint_log_prob(
    out: ActorOutput,
    op_ids: torch.Tensor,
    prob_levels: torch.Tensor,
    mag_levels: torch.Tensor,
) -> torch.Tensor:
    """``log pi(op) + log pi_op(p) + log pi_op(lambda)`` per sample (Eq. 6), [N], from the
    logits (differentiable); the same quantity the sampler returns
    (:func:`dali_aug.kernels.label_sample.log_prob_of` on the actor's output)."""
    return label_sample.log_prob_of(
        out.op_logits, out.prob_logits, out.mag_logits, op_ids, prob_levels, mag_levels
    )


def entropy(out: ActorOutput, *, op_only: bool = False) -> torch.Tensor:
    """[N]: the entropy of the joint distribution, ``H(op) + sum_j pi(j) (H(p | j) +
    H(lambda | j))`` (the factorisation of Eq. 6), differentiable; with ``op_only`` (LB-Aug_E)
    ``H(op)``."""

    def h(logits: torch.Tensor) -> torch.Tensor:
        logp = logits.log_softmax(-1)
        return -(logp.exp() * logp).sum(-1)

    if op_only:
        return h(out.op_logits)
    op_p = out.op_logits.softmax(-1)
    return h(out.op_logits) + (op_p * (h(out.prob_logits) + h(out.mag_logits))).sum(-1)


def applied_probability(out: ActorOutput, config: ActorConfig | None = None) -> torch.Tensor:
    """[N, K]: the probability that op ``j`` is chosen *and* applied,
    ``pi(j; y) * E[p | j; y]`` (``E[p] = 0.5`` for a ``config`` of variant ``e``)."""
    if config is not None and config.variant == "e":
        return out.op_logits.softmax(-1) * 0.5
    p = out.prob_logits.shape[-1]
    values = torch.linspace(0.0, 1.0, p, device=out.prob_logits.device)
    expected_p = (out.prob_logits.softmax(-1) * values).sum(-1)
    return out.op_logits.softmax(-1) * expected_p


def to_op_params(
    catalog_ids: torch.Tensor,
    op_ids: torch.Tensor,
    prob_levels: torch.Tensor,
    mag_levels: torch.Tensor,
    *,
    prob_levels_total: int,
    mag_levels_total: int,
    generator: torch.Generator | None,
    draw_apply: bool = True,
) -> tuple[OpParams, torch.Tensor]:
    """Turns sampled levels into one layer of :class:`OpParams` (Eq. 1).

    Each sample applies its op with probability ``k / (P - 1)`` (a Bernoulli draw), at catalog
    level ``(l + 1) * 10 / M`` with a fair random sign for signed ops; samples that do not
    apply get Identity. The Bernoulli draws, signs, Cutout centres and SamplePairing partners
    come from ``generator`` (a CPU generator; the global RNG when None).

    Args:
        catalog_ids: int64 [K], the catalog id of each op of the actor's search space.
        op_ids: int64 [N], sampled op indices into ``catalog_ids``.
        prob_levels: int64 [N] in ``0..P-1``.
        mag_levels: int64 [N] in ``0..M-1``.
        prob_levels_total: ``P``.
        mag_levels_total: ``M``.
        generator: CPU generator for the non-policy randomness.
        draw_apply: draw the Bernoulli; with False every op is applied and the second
            output is the apply probability instead (the search weighs rewards by it).

    Returns:
        (params [N, 1] on the ids' device, applied: bool [N], or with ``draw_apply=False``
        the apply probabilities float32 [N]).
    """
    n = op_ids.shape[0]
    device = op_ids.device
    u = torch.rand((n, 2), generator=generator).to(device)
    prob = prob_levels.float() / (prob_levels_total - 1)
    applied = u[:, 0] < prob if draw_apply else prob > 0
    cat = catalog_ids.to(device)[op_ids]
    level = flip_signs((mag_levels.float() + 1.0) * (10.0 / mag_levels_total), cat, u[:, 1])
    cat = torch.where(applied, cat, _IDENTITY)
    level = torch.where(applied, level, torch.zeros_like(level))
    centers, partners = random_extras(n, 1, generator=generator)
    params = OpParams(cat.unsqueeze(1), level.unsqueeze(1), centers.to(device), partners.to(device))
    return params, (applied if draw_apply else prob)


def draw_ops(
    actor: Actor,
    out: ActorOutput,
    *,
    generator: torch.Generator | None,
    device_generator: torch.Generator | None,
    draw_apply: bool = True,
) -> tuple[OpParams, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draws one (op, p-level, magnitude-level) per sample from the actor's output with the
    label-conditioned sampler and turns it into op parameters (:func:`to_op_params`). For an
    actor of variant ``e`` the levels are the fixed ones (:attr:`ActorConfig.fixed_levels`)
    and the log-probability is the op's only.

    Args:
        actor: the actor whose search space and level counts apply.
        out: its output for the batch's labels.
        generator: CPU generator of :func:`to_op_params` (Bernoulli, signs, extras).
        device_generator: generator on the logits' device for the sampler.
        draw_apply: as :func:`to_op_params`.

    Returns:
        (params [N, 1], applied bool [N] or the apply probabilities, op indices [N], the
        joint log-probability [N], differentiable w.r.t. the logits).
    """
    op, p_level, m_level, log_prob = label_sample.sample(
        out.op_logits, out.prob_logits, out.mag_logits, generator=device_generator
    )
    cfg = actor.config
    fixed = cfg.fixed_levels
    if fixed is not None:  # LB-Aug_E: only the op is the policy's
        p_level = torch.full_like(p_level, fixed[0])
        m_level = torch.full_like(m_level, fixed[1])
        log_prob = out.op_logits.float().log_softmax(-1).gather(1, op.view(-1, 1)).squeeze(1)
    params, applied = to_op_params(
        actor.catalog_ids,
        op,
        p_level,
        m_level,
        prob_levels_total=cfg.prob_levels,
        mag_levels_total=cfg.mag_levels,
        generator=generator,
        draw_apply=draw_apply,
    )
    return params, applied, op, log_prob


_IDENTITY = index("Identity")


def apply_ops(samples: torch.Tensor, params: OpParams) -> torch.Tensor:
    """Applies one row of ``params`` per sample with the torch backend: to uint8 images
    [B, 3, H, W], or to every frame of uint8 clips [B, T, 3, H, W] (one op per clip, the same
    on all its frames: :func:`dali_aug.video.apply_clip_params`). The one place where the
    search and the training step apply the actor's ops, for images and clips alike.

    Raises:
        TypeError: ``samples`` is not a uint8 tensor of 4 or 5 dimensions.
    """
    if not isinstance(samples, torch.Tensor) or samples.dtype != torch.uint8:
        raise TypeError(
            "LB-Aug applies its ops to uint8 images [B, 3, H, W] or clips [B, T, 3, H, W] "
            f"(the batch's clean crops), got {getattr(samples, 'dtype', type(samples).__name__)}"
        )
    if samples.dim() == 5:
        return apply_clip_params(samples, params)
    if samples.dim() == 4:
        return apply_params(samples, params)
    raise TypeError(
        f"LB-Aug applies its ops to images [B, 3, H, W] or clips [B, T, 3, H, W], got shape "
        f"{tuple(samples.shape)}"
    )
