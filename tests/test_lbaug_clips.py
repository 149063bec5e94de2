"""LB-Aug on clips: one (op, p, lambda) per clip applied to every frame, in the training step
and in the search's rewards; the search on clips with clip critics; the CLI round trip on the
moving demo clips; the errors for images and clips mixed up."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from dali_aug.batch import Batch
from dali_aug.methods import lbaug
from dali_aug.methods.lbaug import DEMO_OPS, Actor, ActorConfig, LBAugMethod, SearchConfig
from dali_aug.methods.lbaug._actor import apply_ops
from dali_aug.methods.lbaug._search import _step_rewards
from dali_aug.ops import apply_params, identity_params, index
from dali_aug.viz import normalize

C = 5


@pytest.fixture(autouse=True)
def _env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DALI_AUG_CACHE", str(tmp_path / "cache"))
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)


def _always_applied_actor(ops: tuple[str, ...] = DEMO_OPS) -> Actor:
    """Uniform over the ops and magnitudes, apply probability 1 (level 10)."""
    actor = Actor(ActorConfig(num_labels=C, ops=ops, hidden=4, depth=1))
    with torch.no_grad():
        for head in (actor.op_head, actor.prob_head, actor.mag_head):
            head.weight.zero_()
            head.bias.zero_()
        actor.prob_head.bias.view(len(ops), 11)[:, 10] = 50.0
    return actor.eval()


def _clips(b: int, t: int, size: int, *, still: bool, seed: int = 0) -> torch.Tensor:
    """uint8 [b, t, 3, size, size]; ``still``: every frame of a clip is the same image."""
    g = torch.Generator().manual_seed(seed)
    if still:
        frame = torch.randint(0, 256, (b, 1, 3, size, size), dtype=torch.uint8, generator=g)
        return frame.expand(b, t, 3, size, size).contiguous()
    return torch.randint(0, 256, (b, t, 3, size, size), dtype=torch.uint8, generator=g)


def _labels(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand((n, C), generator=g) < 0.4).float()


def _clip_batch(clean: torch.Tensor, labels: torch.Tensor) -> Batch:
    b = clean.shape[0]
    return Batch(images=normalize(clean), labels=labels, indices=torch.arange(b),
                 params=identity_params(b), clean=clean)  # fmt: skip


def test_the_step_draws_one_op_per_clip_for_every_frame() -> None:
    b, t = 16, 4
    hook = LBAugMethod(_always_applied_actor(), seed=3)
    still = _clips(b, t, 12, still=True)
    out = hook.augment(None, _clip_batch(still, _labels(b)))  # type: ignore[arg-type]
    assert out.images.shape == (b, t, 3, 12, 12)
    # identical frames stay identical: the same op, level, sign and Cutout box on every frame
    assert torch.equal(out.images, out.images[:, :1].expand_as(out.images))
    # one op-record row per clip (the flip layer, then the actor's), and the ops differ
    assert out.params is not None and out.params.batch_size == b and out.params.num_layers == 2
    ops = out.params.op_ids[:, 1]
    assert len(set(ops.tolist())) > 3 and int(hook.counts.sum()) == b
    assert (ops != index("Identity")).all()  # apply probability 1
    # the changed frames are the image op of the clip's row on each frame
    moving = _clips(b, t, 12, still=False, seed=1)
    out = hook.augment(None, _clip_batch(moving, _labels(b)))  # type: ignore[arg-type]
    assert hook.last_params is not None and hook.last_params.batch_size == b
    for f in range(t):
        expected = normalize(apply_params(moving[:, f], hook.last_params))
        torch.testing.assert_close(out.images[:, f], expected)
    assert not torch.equal(out.images, normalize(moving))


def test_the_same_actor_augments_images_and_clips() -> None:
    """The actor maps labels to ops and stores nothing about the sample's shape: the label
    names (checked by ``dali-aug train``) are what must match."""
    hook = LBAugMethod(_always_applied_actor(), seed=0)
    images = _clips(6, 1, 12, still=False)[:, 0]
    out = hook.augment(None, _clip_batch(images, _labels(6)))  # type: ignore[arg-type]
    assert out.images.shape == (6, 3, 12, 12) and out.params is not None
    with pytest.raises(TypeError, match=r"clips \[B, T, 3, H, W\]"):
        apply_ops(images[0], identity_params(3))
    with pytest.raises(TypeError, match="uint8"):
        apply_ops(images.float(), identity_params(6))


class _Recorder(nn.Module):
    """A critic that records its inputs and predicts 0 logits."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x)
        return torch.zeros(x.shape[0], C)


def test_the_search_rewards_score_clips_with_one_op_on_every_frame() -> None:
    b, t = 12, 3
    actor = _always_applied_actor()
    critic = _Recorder()
    still = _clips(b, t, 10, still=True)
    members = torch.ones((1, b), dtype=torch.bool)
    r, prob, log_prob, _ = _step_rewards(
        actor, [critic], still, _labels(b), members, torch.zeros(1, b),
        generator=torch.Generator().manual_seed(0),
        device_generator=torch.Generator().manual_seed(1),
    )  # fmt: skip
    assert r.shape == prob.shape == log_prob.shape == (b,)
    (seen,) = critic.seen
    assert seen.shape == (b, t, 3, 10, 10)  # the critic scores whole clips
    assert torch.equal(seen, seen[:, :1].expand_as(seen))  # one op per clip, every frame
    assert not torch.equal(seen, normalize(still))


def test_search_on_tiny_clips(tmp_path: Path, one_thread: None) -> None:
    from dali_aug.datasets import moving_clips

    x, y, names = moving_clips(48, length=8, size=16, seed=0, cache=False)
    clips = torch.from_numpy(x[:, ::2]).permute(0, 1, 4, 2, 3).contiguous()  # [N, 4, 3, H, W]
    labels = torch.from_numpy(y)
    cfg = SearchConfig(
        ops=DEMO_OPS,
        folds=2,
        model="clip-r2plus1d-small",
        critic_epochs=1,
        critic_batch_size=16,
        search_epochs=2,
        batch_size=16,
        hidden=16,
        seed=0,
    )
    result = lbaug.search(clips, labels, cfg, progress=False, log=lambda _: None)
    assert result.actor.config.num_labels == len(names) and len(result.history) == 2
    assert all(h["mean_reward"] == h["mean_reward"] for h in result.history)  # not NaN
    out = result.actor(labels[:4])
    assert out.op_logits.shape == (4, len(DEMO_OPS))
    path = lbaug.save_actor(tmp_path / "actor.pt", result.actor, names)
    loaded, loaded_names = lbaug.load_actor(path)
    assert loaded_names == names
    torch.testing.assert_close(loaded(labels[:4]).op_logits, out.op_logits)
    # an image critic for clips, a clip critic for images: named, with the fix
    with pytest.raises(ValueError, match="takes images; use a clip model"):
        lbaug.search(clips, labels, dataclasses.replace(cfg, model="small"), progress=False)
    with pytest.raises(ValueError, match="takes clips; use an image model"):
        lbaug.search(clips[:, 0], labels, cfg, progress=False)
    with pytest.raises(TypeError, match=r"clips \[N, T, 3, H, W\]"):
        lbaug.search(clips[0, 0], labels, cfg, progress=False)


def test_cli_search_then_train_on_the_moving_clips(tmp_path: Path, one_thread: None) -> None:
    from dali_aug.cli import main

    actor = tmp_path / "actor.pt"
    common = ["--data", "moving-shapes", "--multi-label", "--clips", "4", "--clip-stride", "2",
              "--train-size", "48", "--size", "16", "--threads", "1", "--no-progress"]  # fmt: skip
    rc = main(
        ["search", "lbaug", *common, "--folds", "2", "--critic-epochs", "1",
         "--search-epochs", "1", "--batch-size", "16", "--critic-batch-size", "16",
         "--hidden", "16", "--out", str(actor)]
    )  # fmt: skip
    assert rc == 0 and actor.is_file()
    summary = json.loads((tmp_path / "actor_search.json").read_text())
    assert summary["search_config"]["model"] == "clip-r2plus1d-small"
    assert summary["clip_length"] == 4 and summary["clip_stride"] == 2
    assert summary["samples"] == 48 and "FlipLR" in summary["search_config"]["ops"]
    run = tmp_path / "run"
    rc = main(
        ["train", *common, "--method", "lbaug", "--actor", str(actor), "--epochs", "1",
         "--batch-size", "16", "--out", str(run)]
    )  # fmt: skip
    assert rc == 0
    metrics = json.loads((run / "metrics.json").read_text())
    freq = metrics["lbaug"]["frequencies"]
    assert set(freq) == {*DEMO_OPS, "none"} and sum(freq.values()) == pytest.approx(1.0)
    assert metrics["lbaug"]["loader_flip"] is False and "mAP" in metrics["history"][-1]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--clips", "4", "--model", "small"], "--clips needs a clip critic"),
        (["--model", "clip-r2plus1d-small"], "is a clip model; add --clips T"),
        (["--clips", "0"], "must be >= 1"),
        (["--clips", "4", "--model", "clip-avg-nonet"], "unknown model 'nonet'"),
    ],
)
def test_cli_search_errors(tmp_path: Path, extra: list[str], message: str) -> None:
    from dali_aug.cli import main

    argv = ["search", "lbaug", "--data", "moving-shapes", "--out", str(tmp_path / "a.pt")]
    with pytest.raises(SystemExit, match=message):
        main([*argv, *extra])


def test_cli_search_on_moving_clips_needs_clips(tmp_path: Path) -> None:
    from dali_aug.cli import main

    with pytest.raises(SystemExit, match="add --clips T"):
        main(["search", "lbaug", "--data", "moving-shapes", "--out", str(tmp_path / "a.pt")])


def _numbered_clips(n: int, frames: int, size: int) -> torch.Tensor:
    """uint8 [n, frames, size, size, 3]: frame f of clip i is flat grey ``10 * f + i``."""
    value = 10 * torch.arange(frames).view(1, -1) + torch.arange(n).view(-1, 1)
    return value.view(n, frames, 1, 1, 1).expand(n, frames, size, size, 3).to(torch.uint8)


@pytest.mark.parametrize("transform", ["train", "eval"])
def test_load_images_reads_one_fixed_window_per_clip(transform: str) -> None:
    from dali_aug.methods.lbaug._search import load_images
    from dali_aug.video import ClipArraySource

    n, frames = 6, 8
    labels = _labels(n)
    source = ClipArraySource.from_arrays(
        _numbered_clips(n, frames, 16).numpy(), labels.numpy(), classes=[f"l{i}" for i in range(C)]
    )
    kw = {"size": 16, "device": "cpu", "num_threads": 1, "transform": transform, "seed": 4}
    x, y, names = load_images(source, clip_length=4, clip_stride=2, **kw)  # type: ignore[arg-type]
    assert x.shape == (n, 4, 3, 16, 16) and x.dtype == torch.uint8
    torch.testing.assert_close(y, labels)  # in the data's order
    frame = (x.float().mean((2, 3, 4)).round().long() - torch.arange(n).view(-1, 1)) // 10
    assert (frame[:, 1:] - frame[:, :-1] == 2).all()  # one window, frames 2 apart
    if transform == "eval":  # the centred window: start floor(0.5 * (8 - 7 + 1)) = 1
        assert (frame[:, 0] == 1).all()
    again, _, _ = load_images(source, clip_length=4, clip_stride=2, **kw)  # type: ignore[arg-type]
    assert torch.equal(x, again)  # fixed: the same seed reads the same windows


def test_an_actor_without_fliplr_keeps_the_loaders_flip_of_whole_clips() -> None:
    ops = ("Invert", "Color")
    actor = _always_applied_actor(ops)
    with torch.no_grad():  # apply probability 0: the clip stays the Loader's (flipped) crop
        actor.prob_head.bias.zero_()
        actor.prob_head.bias.view(len(ops), 11)[:, 0] = 50.0
    hook = LBAugMethod(actor, seed=0)
    assert hook.keep_loader_flip
    clean = _clips(4, 3, 8, still=False)
    flip = identity_params(4)
    flip = dataclasses.replace(
        flip, op_ids=torch.tensor([[index("FlipLR")]] * 2 + [[index("Identity")]] * 2)
    )
    batch = dataclasses.replace(_clip_batch(clean, _labels(4)), params=flip)
    out = hook.augment(None, batch)  # type: ignore[arg-type]
    expected = torch.cat([clean[:2].flip(-1), clean[2:]])  # every frame of clips 0, 1 flipped
    torch.testing.assert_close(out.images, normalize(expected))
    assert hook.op_frequencies()["none"] == 1.0
