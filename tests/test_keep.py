"""KeepAugment pieces: saliency modes and the Selective-Cut / Selective-Paste / KeepCutMix
augmentations on top of the region selection (whose own tests are test_region_select.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from dali_aug.kernels.region_select import region_scores, score_threshold
from PIL import Image

from dali_aug.batch import Batch
from dali_aug.cli import main
from dali_aug.datasets import make_shapes
from dali_aug.methods.cutout import CutoutMethod
from dali_aug.methods.keep import (
    EarlyHead,
    KeepMethod,
    box_mask,
    keep_cutmix,
    keep_cutout,
    keep_paste,
    saliency,
)
from dali_aug.models import build_model
from dali_aug.sources import FolderSource
from dali_aug.train import Trainer
from dali_aug.viz import draw_boxes, heatmap

SIZE = (6, 6)


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("small", 4).eval()


@pytest.fixture()
def images() -> torch.Tensor:
    return torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("mode", ["full", "lowres", "early"])
@pytest.mark.parametrize("kind", ["single", "multi", "none"])
def test_saliency_shapes(
    model: torch.nn.Module, images: torch.Tensor, mode: str, kind: str
) -> None:
    targets = {
        "single": torch.tensor([0, 1, 2, 3, 0, 1]),
        "multi": (torch.rand(6, 4, generator=torch.Generator().manual_seed(2)) > 0.5).float(),
        "none": None,
    }[kind]
    head = EarlyHead(48, 4)
    sal = saliency(model, images, targets, mode=mode, early_head=head)  # type: ignore[arg-type]
    assert sal.shape == (6, 32, 32) and sal.dtype == torch.float32
    assert bool((sal >= 0).all()) and bool(torch.isfinite(sal).all())
    assert float(sal.sum()) > 0
    assert all(p.grad is None for p in model.parameters())  # no parameter gradients


def test_full_saliency_is_the_input_gradient(model: torch.nn.Module, images: torch.Tensor) -> None:
    targets = torch.tensor([3, 2, 1, 0, 3, 2])
    x = images.clone().requires_grad_(True)
    model(x).gather(1, targets.view(-1, 1)).sum().backward()
    assert x.grad is not None
    expected = x.grad.abs().amax(1)
    torch.testing.assert_close(saliency(model, images, targets), expected)


def test_saliency_errors(model: torch.nn.Module, images: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="unknown saliency mode"):
        saliency(model, images, None, mode="bad")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="early_head"):
        saliency(model, images, None, mode="early")
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        saliency(model, images[:, :1], None)
    with pytest.raises(ValueError, match="targets"):
        saliency(model, images, torch.tensor([0, 1]))


def _maps() -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    sal = torch.rand(6, 32, 32, generator=g)
    sal[:3, 8:16, 10:20] += 5.0  # a salient object in half of the maps
    return sal


def test_keep_cutout_cuts_only_low_saliency(images: torch.Tensor) -> None:
    sal = _maps()
    out, boxes = keep_cutout(images, sal, SIZE, tau=0.6, generator=torch.Generator().manual_seed(0))
    scores = region_scores(sal, SIZE)
    q = score_threshold(scores, 0.6)
    mask = box_mask(boxes, 32, 32)
    for i, (y0, x0, _, _) in enumerate(boxes.tolist()):
        assert float(scores[i, y0, x0]) < float(q[i])
    assert bool((out[mask.expand_as(out)] == 0).all())
    assert torch.equal(out[~mask.expand_as(out)], images[~mask.expand_as(images)])


def test_keep_paste_restores_a_high_saliency_box(images: torch.Tensor) -> None:
    sal = _maps()
    augmented = -images
    out, boxes = keep_paste(
        augmented, images, sal, SIZE, generator=torch.Generator().manual_seed(0)
    )
    scores = region_scores(sal, SIZE)
    q = score_threshold(scores, 0.6)
    mask = box_mask(boxes, 32, 32).expand_as(out)
    for i, (y0, x0, _, _) in enumerate(boxes.tolist()):
        assert float(scores[i, y0, x0]) >= float(q[i])
    assert torch.equal(out[mask], images[mask])  # pasted pixels are the original's
    assert torch.equal(out[~mask], augmented[~mask])
    with pytest.raises(ValueError, match="differ"):
        keep_paste(augmented[:2], images, sal, SIZE)


@pytest.mark.parametrize("multi", [False, True])
def test_keep_cutmix(images: torch.Tensor, multi: bool) -> None:
    sal = _maps()
    targets = (
        (torch.rand(6, 4, generator=torch.Generator().manual_seed(4)) > 0.5).float()
        if multi
        else torch.tensor([0, 1, 2, 3, 0, 1])
    )
    out, mixed, src, dst = keep_cutmix(
        images, targets, sal, SIZE, 4, generator=torch.Generator().manual_seed(0)
    )
    partner = torch.roll(torch.arange(6), 1)
    for i in range(6):
        sy, sx, sy1, sx1 = src[i].tolist()
        dy, dx, dy1, dx1 = dst[i].tolist()
        assert torch.equal(out[i, :, dy:dy1, dx:dx1], images[partner[i], :, sy:sy1, sx:sx1])
    scores = region_scores(sal, SIZE)
    q = score_threshold(scores, 0.6)
    for i in range(6):  # source is salient in the partner, destination is not in the target
        assert float(scores[partner[i], src[i, 0], src[i, 1]]) >= float(q[partner[i]])
        assert float(scores[i, dst[i, 0], dst[i, 1]]) < float(q[i])
    area = 36 / 1024
    y = targets.float() if multi else torch.nn.functional.one_hot(targets, 4).float()
    torch.testing.assert_close(mixed, (1 - area) * y + area * y[partner])


@pytest.mark.parametrize("keep_mode", ["cutout", "paste", "cutmix"])
@pytest.mark.parametrize("sal_mode", ["full", "lowres", "early"])
def test_keep_method_trains_from_the_cli(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, keep_mode: str, sal_mode: str
) -> None:
    data = tmp_path_factory.getbasetemp() / "keep-shapes"
    make_shapes(data, 32, seed=3, size=32)
    out = tmp_path / "run"
    argv = [
        "train",
        "--data",
        str(data),
        "--size",
        "32",
        "--batch-size",
        "16",
        "--epochs",
        "1",
        "--out",
        str(out),
        "--no-progress",
        "--method",
        "keep",
        "--keep-mode",
        keep_mode,
        "--saliency",
        sal_mode,
    ]
    assert main(argv) == 0
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert len(history) == 1 and history[0]["images"] == 32
    assert math.isfinite(history[0]["train_loss"])
    # the picture of what the trained model's saliency chooses
    show = ["show", "--data", str(data), "--size", "32", "--out", str(out), "--method", "keep"]
    assert main([*show, "--keep-mode", keep_mode, "--saliency", sal_mode]) == 0
    with Image.open(out / "keep.png") as picture:  # 16 images: 2 x (result row + map row)
        assert picture.size == (8 * 64, 4 * (64 + 28))


def test_show_keep_without_a_checkpoint_warns_and_early_needs_a_trained_head(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = make_shapes(tmp_path / "shapes", 16, seed=4, size=32)
    base = ["show", "--data", str(data), "--size", "32", "--out", str(tmp_path / "o")]
    assert main([*base, "--method", "keep", "--saliency", "full"]) == 0
    assert "untrained model" in capsys.readouterr().err
    assert (tmp_path / "o" / "keep.png").is_file()
    with pytest.raises(SystemExit, match="does not exist"):
        main([*base, "--method", "keep", "--checkpoint", str(tmp_path / "nope.pt")])
    # a checkpoint trained without the early head cannot show early saliency
    model = build_model("small", 4)
    torch.save({"model": model.state_dict(), "methods": {}}, tmp_path / "plain.pt")
    with pytest.raises(SystemExit, match="no early head"):
        main(
            [
                *base,
                "--method",
                "keep",
                "--saliency",
                "early",
                "--checkpoint",
                str(tmp_path / "plain.pt"),
            ]
        )


def test_draw_boxes_and_heatmap() -> None:
    images = np.zeros((2, 8, 8, 3), np.uint8)
    out = draw_boxes(images, torch.tensor([[1, 2, 4, 6], [0, 0, 8, 8]]), (255, 0, 0))
    assert images.sum() == 0  # input untouched
    outline = np.zeros((8, 8), bool)
    outline[1:4, [2, 5]] = outline[[1, 3], 2:6] = True
    assert np.array_equal(out[0, ..., 0] == 255, outline)
    assert out[1, 0, :, 0].all() and out[1, :, 7, 0].all() and not out[1, 1:7, 1:7].any()
    maps = heatmap(torch.tensor([[[0.0, 1.0], [0.5, 2.0]]]))
    assert maps.dtype == np.uint8 and maps.shape == (1, 2, 2, 3)
    assert maps[0, 0, 0].tolist() == [0, 0, 0] and maps[0, 1, 1].tolist() == [255, 255, 255]


def test_keep_paste_needs_the_op_record(model: torch.nn.Module, images: torch.Tensor) -> None:
    hook = KeepMethod(model, 4, mode="paste", saliency_mode="full")
    needs = hook.loader_needs()
    assert needs.op_record and needs.clean and needs.policy
    batch = Batch(images=images, labels=torch.zeros(6, dtype=torch.long), indices=torch.arange(6))
    with pytest.raises(ValueError, match="op_record=True, clean=True"):
        hook.select(batch)
    with pytest.raises(ValueError, match="keep mode"):
        KeepMethod(model, 4, mode="bad")  # type: ignore[arg-type]


def _train_with_keep(
    root: Path, saliency_mode: str, steps: int, seed: int
) -> tuple[Trainer, KeepMethod, torch.Tensor, torch.Tensor]:
    """A small model trained by the real step (KeepMethod with Selective-Cut) on 32 px shapes;
    returns the trainer, the method and the training images and labels."""
    source = FolderSource.scan(make_shapes(root, 384, seed=seed, size=32))
    x = torch.stack([_read(source.root / p) for p in source.paths])
    y = source.targets
    torch.manual_seed(seed)
    model = build_model("small", len(source.classes))
    hook = KeepMethod(model, len(source.classes), saliency_mode=saliency_mode, seed=seed)  # type: ignore[arg-type]
    trainer = Trainer(model, torch.optim.AdamW(model.parameters(), lr=2e-3), methods=[hook])
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        i = torch.randint(0, len(x), (32,), generator=g)
        trainer.step(Batch(images=x[i], labels=y[i], indices=i))
    return trainer, hook, x, y


def _read(path: Path) -> torch.Tensor:
    from PIL import Image

    from dali_aug.viz import normalize

    rgb = torch.from_numpy(np.asarray(Image.open(path).convert("RGB")).copy())
    return normalize(rgb.permute(2, 0, 1)[None])[0]


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over images of the Pearson correlation of two [N, ...] maps."""
    a, b = a.flatten(1).double(), b.flatten(1).double()
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return float(((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-12)).mean())


@pytest.mark.slow
def test_lowres_and_early_maps_correlate_with_full_on_a_trained_model(tmp_path: Path) -> None:
    """The cheap saliency modes rank boxes like the full map (on training images, where
    KeepAugment computes them): box-score correlation with the full map is clearly positive
    and clearly above that with a mismatched image's map."""
    trainer, hook, x, y = _train_with_keep(tmp_path / "shapes", "early", steps=300, seed=23)
    model = trainer.model.eval()
    x, y = x[::3], y[::3]  # 128 images of all classes
    assert (model(x).argmax(1) == y).float().mean() > 0.9  # trained
    box = (8, 8)  # the hook's box at 32 px
    full = region_scores(saliency(model, x, y), box).float()
    report = {}
    for mode in ("lowres", "early"):
        sal = saliency(model, x, y, mode=mode, early_head=hook.early_head)  # type: ignore[arg-type]
        cheap = region_scores(sal, box).float()
        report[mode] = (_corr(full, cheap), _corr(full, cheap.roll(1, 0)))
    print("box-score correlation with full (matched, mismatched):", report)
    for mode, (matched, mismatched) in report.items():
        assert matched > 0.2, (mode, report)
        assert matched > mismatched + 0.1, (mode, report)


def test_early_head_is_saved_and_restored_with_the_trainer(tmp_path: Path) -> None:
    trainer, hook, _, _ = _train_with_keep(tmp_path / "shapes", "early", steps=2, seed=5)
    state = trainer.state_dict()
    assert hook.early_head is not None
    model = build_model("small", 4)
    fresh = KeepMethod(model, 4, saliency_mode="early", seed=99)
    other = Trainer(model, torch.optim.AdamW(model.parameters(), lr=2e-3), methods=[fresh])
    other.load_state_dict(state)
    assert fresh.early_head is not None
    for k, v in hook.early_head.state_dict().items():
        assert torch.equal(fresh.early_head.state_dict()[k], v), k
    assert torch.equal(fresh.generator.get_state(), hook.generator.get_state())
    # the head is trained with the model: it is in the optimizer (its own parameter group)
    head_ids = {id(p) for p in hook.early_head.parameters()}
    assert head_ids <= {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    # resuming without the method (another --method) is an error that says so
    bare = Trainer(build_model("small", 4), torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="same --method"):
        bare.load_state_dict(state)


def test_cutout_method_is_the_saliency_blind_baseline(images: torch.Tensor) -> None:
    hook = CutoutMethod(box_fraction=0.25, seed=3)
    batch = Batch(images=images, labels=torch.zeros(6, dtype=torch.long), indices=torch.arange(6))
    out = hook.augment(None, batch).images  # type: ignore[arg-type]
    changed = out != images
    assert torch.equal(out[changed], torch.zeros_like(out[changed]))  # filled with 0
    # exactly one 8 x 8 box per image (images are 32 px), inside the image
    per_image = changed.any(1)
    assert per_image.flatten(1).sum(1).tolist() == [64] * 6
    rows, cols = per_image.any(2), per_image.any(1)
    assert rows.sum(1).tolist() == [8] * 6 and cols.sum(1).tolist() == [8] * 6
    # positions are uniform over the 25 x 25 placements (chi-square on the top-left corner)
    from scipy.stats import chisquare

    many = torch.zeros(2000, 1, 8, 8)
    hook = CutoutMethod(box_fraction=0.5, seed=4)
    cut = hook.augment(None, Batch(many + 1, torch.zeros(2000), torch.arange(2000)))  # type: ignore[arg-type]
    mask = cut.images[:, 0] == 0
    corner = mask.float().flatten(1).argmax(1)  # row-major first zero = top-left corner
    y, x = corner // 8, corner % 8
    counts = torch.bincount(y * 5 + x, minlength=25)
    assert len(counts) == 25 and chisquare(counts.numpy()).pvalue > 1e-3
    with pytest.raises(ValueError, match="box_fraction"):
        CutoutMethod(box_fraction=0.0)


def test_cutout_method_trains_from_the_cli(tmp_path: Path) -> None:
    data = make_shapes(tmp_path / "shapes", 16, seed=3, size=32)
    out = tmp_path / "run"
    argv = ["train", "--data", str(data), "--size", "32", "--batch-size", "8", "--epochs", "1"]
    assert main([*argv, "--out", str(out), "--no-progress", "--method", "cutout"]) == 0
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert history[0]["images"] == 16 and math.isfinite(history[0]["train_loss"])
    assert "0:cutout" in torch.load(out / "checkpoint.pt", weights_only=True)["methods"]


@pytest.mark.parametrize("mode", ["full", "lowres", "early"])
def test_saliency_leaves_batch_norm_statistics_alone(images: torch.Tensor, mode: str) -> None:
    """A regression: the saliency pass in training mode used to update the running
    statistics (with half-resolution images for lowres), which broke evaluation."""
    torch.manual_seed(0)
    net = build_model("small", 4).train()
    head = EarlyHead(48, 4)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    sal = saliency(
        net, images * 3 + 1, torch.zeros(6, dtype=torch.long), mode=mode, early_head=head
    )  # type: ignore[arg-type]
    assert float(sal.sum()) > 0
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    net(images)  # the model's own forward still updates them
    assert not torch.equal(net.state_dict()["stem.1.running_mean"], before["stem.1.running_mean"])
