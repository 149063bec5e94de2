"""LB-Aug stage C: training with the learned actor, as a training-step
:class:`~dali_aug.train.Method`.

Before every forward pass the method maps the batch's multi-hot labels through the (frozen,
eval-mode) actor, draws one (op, p-level, lambda-level) per sample, applies the op with
probability ``p`` to the batch's uint8 images with the torch backend (on the batch's device)
and replaces ``batch.images`` by the normalised result. The ops applied are appended to
``batch.params`` as one more layer and kept on the method (``last_params``, ``counts``).

The method needs a Loader with the op record and the clean crops and no dataset-level policy
(:meth:`LBAugMethod.loader_needs`): it starts from
``batch.clean`` (the crop before the Loader's flip). When the actor's search space holds
FlipLR, the Loader's random flip is dropped and the actor decides the flip per label (on the
demo shapes a flip destroys the left/right labels); otherwise the Loader's flip is kept.

Clips (a Loader with ``clip_length``): ``batch.clean`` is uint8 [B, T, 3, S, S] and the labels
are one row per clip, so the actor draws ONE (op, p, lambda) per clip and the op is applied to
every frame of the clip (:func:`dali_aug.video.apply_clip_params`, the same level, sign and
Cutout box on all frames); the op record gets one row per clip. This is the paper's "videos
augmented frame by frame" with the image search space (Sec. 4, Charades), one op per clip
(our reading, docs/methods/lbaug.md).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import torch

from dali_aug.batch import check_unaugmented
from dali_aug.methods.lbaug._actor import Actor, apply_ops, draw_ops
from dali_aug.ops import OpParams, index
from dali_aug.train import DeviceGenerators, LoaderNeeds, Method, Step
from dali_aug.viz import normalize

if TYPE_CHECKING:
    from dali_aug.batch import Batch

__all__ = ["LBAugMethod"]


class LBAugMethod(Method):
    """Applies the actor's label-conditioned ops in the training step.

    Args:
        actor: a trained :class:`Actor` (frozen: put in eval mode, moved to the batches'
            device, not trained and not part of the checkpoint's modules).
        seed: seeds the method's generators (op sampling, Bernoulli draws, signs, extras).
        keep_loader_flip: start from the Loader's flipped image; default: only when the
            actor's search space has no FlipLR.

    Attributes:
        last_params: the ops applied to the last batch ([B, 1], one row per image or clip;
            Identity when not applied).
        counts: int64 [K + 1], how often each op was applied (last entry: not applied),
            counted per image or clip.
    """

    name = "lbaug"

    def __init__(self, actor: Actor, *, seed: int = 0, keep_loader_flip: bool | None = None):
        self.actor = actor.eval()
        self.generator = torch.Generator().manual_seed(seed)
        self._device_generators = DeviceGenerators(seed + 1)
        self.keep_loader_flip = (
            "FlipLR" not in actor.config.ops if keep_loader_flip is None else keep_loader_flip
        )
        self.last_params: OpParams | None = None
        self.counts = torch.zeros(actor.config.num_ops + 1, dtype=torch.int64)

    def op_frequencies(self) -> dict[str, float]:
        """Fraction of the training samples so far that got each op (and "none")."""
        total = max(int(self.counts.sum()), 1)
        names = (*self.actor.config.ops, "none")
        return {n: int(c) / total for n, c in zip(names, self.counts.tolist(), strict=True)}

    @torch.no_grad()
    def apply(self, clean: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, OpParams]:
        """Samples and applies the actor's ops to uint8 images [B, 3, H, W] or clips
        [B, T, 3, H, W] (one op per clip, on every frame).

        Args:
            clean: the uint8 images or clips.
            labels: multi-hot [B, C], one row per image or clip.

        Returns:
            (the augmented uint8 images or clips, the ops applied as :class:`OpParams`
            [B, 1]: one row per image or clip).
        """
        device = clean.device
        actor = self.actor.to(device).eval()
        out = actor(labels.to(device))
        cfg = actor.config
        params, applied, op, _ = draw_ops(
            actor,
            out,
            generator=self.generator,
            device_generator=self._device_generators(device),
        )
        chosen = torch.where(applied, op, torch.full_like(op, cfg.num_ops))
        self.counts += torch.bincount(chosen, minlength=cfg.num_ops + 1).cpu()
        return apply_ops(clean, params), params

    def loader_needs(self) -> LoaderNeeds:
        return LoaderNeeds(policy=False, op_record=True, clean=True)

    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": self.generator.get_state(),
            "device_generators": self._device_generators.state_dict(),
            "counts": self.counts.clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self._device_generators.load_state_dict(state["device_generators"])
        self.counts = state["counts"].clone()

    def augment(self, step: Step, batch: Batch) -> Batch:
        clean, flip = check_unaugmented(batch, "LB-Aug")
        start = batch.flipped_clean()
        if not self.keep_loader_flip:  # the actor decides the flip: start from the crop
            flip = dataclasses.replace(flip, op_ids=torch.full_like(flip.op_ids, _IDENTITY))
            start = clean
        images, params = self.apply(start, batch.labels)
        self.last_params = params
        x = normalize(images).to(batch.images.dtype)
        return dataclasses.replace(batch, images=x, params=flip.then(params))


_IDENTITY = index("Identity")
