"""LB-Aug stage C: training with the learned actor, as a :class:`~dali_aug.train.Hook`.

Before every forward pass the hook maps the batch's multi-hot labels through the (frozen,
eval-mode) actor, draws one (op, p-level, lambda-level) per sample, applies the op with
probability ``p`` to the batch's uint8 images with the torch backend (on the batch's device)
and replaces ``batch.images`` by the normalised result. The ops applied are appended to
``batch.params`` as one more layer and kept on the hook (``last_params``, ``counts``).

The hook needs a Loader with ``provenance=True`` and no dataset-level policy: it starts from
``batch.clean`` (the crop before the Loader's flip). When the actor's search space holds
FlipLR, the Loader's random flip is dropped and the actor decides the flip per label (on the
demo shapes a flip destroys the left/right labels); otherwise the Loader's flip is kept.
"""

from __future__ import annotations

import dataclasses

import torch

from dali_aug.kernels import label_sample
from dali_aug.lbaug._actor import Actor, to_op_params
from dali_aug.loader import Batch
from dali_aug.ops import OpParams, apply_params, index
from dali_aug.train import Hook, Trainer
from dali_aug.viz import normalize

__all__ = ["LBAugHook"]


class LBAugHook(Hook):
    """Applies the actor's label-conditioned ops in the training step.

    Args:
        actor: a trained :class:`Actor` (put in eval mode and moved to the batches' device).
        seed: seeds the hook's generators (op sampling, Bernoulli draws, signs, extras).
        keep_loader_flip: start from the Loader's flipped image; default: only when the
            actor's search space has no FlipLR.

    Attributes:
        last_params: the ops applied to the last batch ([B, 1]; Identity when not applied).
        counts: int64 [K + 1], how often each op was applied (last entry: not applied).
    """

    def __init__(self, actor: Actor, *, seed: int = 0, keep_loader_flip: bool | None = None):
        self.actor = actor.eval()
        self.generator = torch.Generator().manual_seed(seed)
        self._seed = seed
        self._device_generators: dict[torch.device, torch.Generator] = {}
        self.keep_loader_flip = (
            "FlipLR" not in actor.config.ops if keep_loader_flip is None else keep_loader_flip
        )
        self.last_params: OpParams | None = None
        self.counts = torch.zeros(actor.config.num_ops + 1, dtype=torch.int64)

    def _device_generator(self, device: torch.device) -> torch.Generator:
        if device not in self._device_generators:
            gen = torch.Generator(device=device).manual_seed(self._seed + 1)
            self._device_generators[device] = gen
        return self._device_generators[device]

    def op_frequencies(self) -> dict[str, float]:
        """Fraction of the training samples so far that got each op (and "none")."""
        total = max(int(self.counts.sum()), 1)
        names = (*self.actor.config.ops, "none")
        return {n: int(c) / total for n, c in zip(names, self.counts.tolist(), strict=True)}

    @torch.no_grad()
    def augment(self, clean: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, OpParams]:
        """Samples and applies the actor's ops to uint8 [B, 3, H, W] images.

        Returns:
            (augmented uint8 images, the ops applied as :class:`OpParams` [B, 1]).
        """
        device = clean.device
        actor = self.actor.to(device).eval()
        out = actor(labels.to(device))
        cfg = actor.config
        op, p_level, m_level, _ = label_sample.sample(
            out.op_logits,
            out.prob_logits,
            out.mag_logits,
            generator=self._device_generator(device),
        )
        params, applied = to_op_params(
            actor.catalog_ids,
            op,
            p_level,
            m_level,
            prob_levels_total=cfg.prob_levels,
            mag_levels_total=cfg.mag_levels,
            generator=self.generator,
        )
        chosen = torch.where(applied, op, torch.full_like(op, cfg.num_ops))
        self.counts += torch.bincount(chosen, minlength=cfg.num_ops + 1).cpu()
        return apply_params(clean, params), params

    def before_forward(self, trainer: Trainer, batch: Batch) -> Batch:
        if batch.clean is None or batch.params is None:
            raise ValueError(
                "the LB-Aug hook needs a Loader with provenance=True (batch.clean and "
                "batch.params) and no dataset-level policy"
            )
        if batch.params.num_layers != 1:
            raise ValueError(
                f"the Loader ran a dataset-level policy ({batch.params.num_layers - 1} layers); "
                "LB-Aug replaces it: build the Loader with policy=None"
            )
        flip = batch.params
        if not self.keep_loader_flip:
            flip = dataclasses.replace(flip, op_ids=torch.full_like(flip.op_ids, _IDENTITY))
        start = apply_params(batch.clean, flip)
        images, params = self.augment(start, batch.labels)
        self.last_params = params
        layers = OpParams(
            *(
                torch.cat([getattr(flip, f), getattr(params, f).to(flip.op_ids.device)], 1)
                for f in _FIELDS
            )
        )
        x = normalize(images).to(batch.images.dtype)
        return dataclasses.replace(batch, images=x, params=layers)


_IDENTITY = index("Identity")
_FIELDS = tuple(f.name for f in dataclasses.fields(OpParams))
