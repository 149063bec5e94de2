"""Tests for the ``dali-aug`` command line (``dali_aug.cli.main``): train, resume, multi-label,
show, the ImageNet layout, errors, and a 2-process torchrun run (CPU, gloo)."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from dali_aug.cli import main
from dali_aug.datasets import MULTI_LABELS, SHAPE_CLASSES, make_shapes
from dali_aug.models import build_model

REPO = Path(__file__).resolve().parents[1]
FAST = ["--size", "32", "--batch-size", "16", "--no-progress"]


@pytest.fixture(autouse=True)
def _cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Demo data (never generated here: every test passes --data) would go to a tmp folder."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("DALI_AUG_CACHE", str(cache))
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    return cache


@pytest.fixture(scope="module")
def multi_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Multi-label ImageNet layout: DIR/train and DIR/val, each with labels.csv."""
    root = tmp_path_factory.mktemp("cli-multi")
    make_shapes(root / "train", 32, seed=5, multi_label=True, size=32)
    make_shapes(root / "val", 16, seed=6, multi_label=True, size=32)
    return root


def _metrics(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / "metrics.json").read_text())
    return data


def _train(data: Path, out: Path, *extra: str) -> int:
    return main(["train", "--data", str(data), "--out", str(out), *FAST, *extra])


def _is_png(path: Path) -> bool:
    with Image.open(path) as im:
        return im.format == "PNG" and im.size[0] > 32 and im.size[1] > 32


def test_train_writes_metrics_and_samples(
    shapes_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], _cache: Path
) -> None:
    out = tmp_path / "run"
    assert _train(shapes_dir, out, "--epochs", "1") == 0
    printed = capsys.readouterr().out
    assert "64 train images, 4 classes" in printed and "epoch=1" in printed
    m = _metrics(out)
    assert m["world_size"] == 1
    assert m["skipped"] == []
    assert m["classes"] == list(SHAPE_CLASSES)
    assert [r["epoch"] for r in m["history"]] == [1]
    row = m["history"][0]
    assert row["images"] == 64 and row["skipped"] == 0 and row["train_loss"] > 0
    assert "val_acc" not in row  # a plain ImageFolder has no val split
    assert len(m["data_order_epoch0"]) == 16
    assert m["args"]["policy"] == "ra-m9-n2"
    assert _is_png(out / "samples.png")
    assert (out / "checkpoint.pt").is_file()
    assert not _cache.exists()  # --data given: no demo data generated


def test_resume_continues_where_the_run_stopped(
    shapes_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert _train(shapes_dir, straight, "--epochs", "2") == 0
    assert _train(shapes_dir, split, "--epochs", "2", "--max-epochs-this-run", "1") == 0
    assert [r["epoch"] for r in _metrics(split)["history"]] == [1]
    capsys.readouterr()
    assert _train(shapes_dir, split, "--epochs", "2", "--resume") == 0
    printed = capsys.readouterr().out
    assert "at epoch 2" in printed
    assert "epoch=2" in printed and "epoch=1 " not in printed  # only the second epoch ran
    a, b = _metrics(straight), _metrics(split)
    assert [r["epoch"] for r in b["history"]] == [1, 2]
    assert b["data_order_epoch0"] == a["data_order_epoch0"]
    # the interrupted run is the uninterrupted one (same data, weights, optimizer, schedule)
    for x, y in zip(a["history"], b["history"], strict=True):
        assert x["images"] == y["images"]
        assert y["train_loss"] == pytest.approx(x["train_loss"], rel=1e-4)


def test_multi_label_run_reports_map(
    multi_layout: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "multi"
    assert _train(multi_layout, out, "--epochs", "1", "--multi-label", "--no-flip") == 0
    printed = capsys.readouterr().out
    assert "final mAP:" in printed and "10 classes" in printed
    m = _metrics(out)
    assert m["classes"] == list(MULTI_LABELS)
    row = m["history"][-1]
    assert 0.0 <= row["mAP"] <= 1.0 and 0.0 <= row["mA"] <= 1.0
    assert len(row["label_f1"]) == len(MULTI_LABELS) and 0.0 <= row["f1"] <= 1.0
    assert "val_acc" not in row
    assert m["args"]["no_flip"] is True
    assert list(m["per_label"]) == list(MULTI_LABELS)  # per-label metrics keyed by name
    first = MULTI_LABELS[0]
    assert m["per_label"][first]["recall"] == row["label_recall"][0]
    assert m["per_label"][first]["ap"] == row["ap"][0]


def test_imagenet_layout_reports_val_metrics(
    imagenet_layout_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "inet"
    assert _train(imagenet_layout_dir, out, "--epochs", "1", "--policy", "aa-imagenet") == 0
    printed = capsys.readouterr().out
    assert "48 train images" in printed
    assert "final val_acc:" in printed and "(chance 0.250)" in printed
    row = _metrics(out)["history"][-1]
    assert 0.0 <= row["val_acc"] <= 1.0 and row["val_loss"] > 0
    assert row["images"] == 48


@pytest.mark.parametrize(
    ("last", "images", "warned"),
    [(None, 48, True), ("partial", 48, True), ("drop", 44, False), ("fill", 66, False)],
)
def test_last_batch_flag_and_the_small_last_batch_warning(
    imagenet_layout_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    last: str | None,
    images: int,
    warned: bool,
) -> None:
    """48 training images in batches of 22: the last batch holds 4 (under a quarter: warned),
    is dropped (44 images an epoch) or filled (66); the 16 validation images are never
    dropped or filled."""
    extra = [] if last is None else ["--last-batch", last]
    out = tmp_path / "lb"
    assert _train(imagenet_layout_dir, out, "--epochs", "1", "--batch-size", "22", *extra) == 0
    err = capsys.readouterr().err
    assert ("holds 4 of 22 samples" in err) is warned
    row = _metrics(out)["history"][-1]
    assert row["images"] == images and row["val_samples"] == 16


def test_skipped_files_are_recorded(shapes_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(shapes_dir, data)
    bad = data / "cross" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = tmp_path / "run"
    with pytest.warns(RuntimeWarning, match="skipped 1 unreadable"):
        assert _train(data, out, "--epochs", "1") == 0
    m = _metrics(out)
    assert m["skipped"] == [str(bad)]
    # the unreadable file is replaced in its batch by the next readable sample (equal step
    # counts on every shard): 65 samples, one of them twice
    assert m["history"][0]["skipped"] == 1 and m["history"][0]["images"] == 65


def test_show_writes_samples(
    shapes_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "show"
    argv = ["show", "--data", str(shapes_dir), "--size", "32", "--out", str(out)]
    assert main([*argv, "--policy", "ta-wide"]) == 0
    assert "samples.png" in capsys.readouterr().out
    assert _is_png(out / "samples.png")
    assert not (out / "metrics.json").exists()


@pytest.mark.parametrize(
    "name", ["bogus", "ra-m11-n2", "aa-mnist", "rand-n2.5", "rand-m9.5", "ra-m9-inc1"]
)
def test_bad_policy_name(
    shapes_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    out = tmp_path / "never"
    for command in ("train", "show"):
        code = main([command, "--data", str(shapes_dir), "--policy", name, "--out", str(out)])
        assert code == 2
        err = capsys.readouterr().err
        assert f"bad policy name {name!r}" in err
        assert "Valid forms" in err and "aa-imagenet" in err
        assert "'rand-m<int>-n<int>" in err and "'ra-m<0-10>-n<int>" in err  # both spellings
    assert not out.exists()


def test_resume_without_checkpoint(shapes_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"--resume but .*checkpoint\.pt does not exist"):
        _train(shapes_dir, tmp_path / "empty", "--epochs", "1", "--resume")


def test_data_that_is_not_a_folder(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="is not a folder"):
        _train(tmp_path / "missing", tmp_path / "out", "--epochs", "1")


def test_argparse_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["train", "--model", "vgg"])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2


# -- torchrun --------------------------------------------------------------------------------
def _descendants(pid: int) -> list[int]:
    """The ids of every process below ``pid`` (read from /proc), children first."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _run(cmd: list[str], env: dict[str, str], cwd: Path, timeout: float) -> tuple[int | None, str]:
    """Runs ``cmd`` (output to a file, so no pipe outlives it); on timeout stops it and every
    process it started (torchrun puts its workers in their own sessions) and returns
    (None, output)."""
    log = cwd / f"run-{os.getpid()}.log"
    with log.open("w") as fh:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT)
        try:
            code: int | None = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            workers = _descendants(proc.pid)
            proc.terminate()  # torchrun forwards SIGTERM to its workers
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            for pid in workers:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            code = None
    return code, log.read_text()


def _torchrun(
    data: Path, out: Path, tmp: Path, timeout: float, *extra: str, nproc: int = 2
) -> tuple[int | None, str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "DALI_AUG_CACHE": str(tmp / "cache"),
    }
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
        "-m", "dali_aug.cli", "train", "--data", str(data), "--epochs", "1", "--size", "32",
        "--batch-size", "8", "--out", str(out), "--no-progress", *extra,
    ]  # fmt: skip
    return _run(cmd, env, tmp, timeout)


@pytest.mark.slow
def test_torchrun_two_processes(shapes_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    code, log = _torchrun(shapes_dir, out, tmp_path, 240)
    assert code == 0, log[-4000:]
    m = _metrics(out)
    assert m["world_size"] == 2
    assert "shards: 2" in log
    row = m["history"][0]
    assert row["images"] == 32  # rank 0's shard: 64 / 2, full batches of 8 (drop_last)
    assert (out / "samples.png").is_file()


@pytest.mark.slow
def test_torchrun_with_val_split(imagenet_layout_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp-val"
    code, log = _torchrun(imagenet_layout_dir, out, tmp_path, 120)
    assert code == 0, f"exit {code} (None: hung, killed after 120 s)\n{log[-3000:]}"
    assert "val_acc" in _metrics(out)["history"][0]


@pytest.mark.slow
def test_torchrun_every_rank_evaluates_each_val_image_once(tmp_path: Path) -> None:
    """Issue 28: 17 validation images on 3 ranks are evaluated 17 times (5 + 6 + 6; padded
    shards would evaluate 6 + 6 + 6 = 18), every rank evaluates its part, and the gathered
    metrics are those of the saved model evaluated on the whole set in one process."""
    data = tmp_path / "data"
    make_shapes(data / "train", 24, seed=8, size=32)
    make_shapes(data / "val", 17, seed=9, size=32)
    out = tmp_path / "ddp3val"
    code, log = _torchrun(data, out, tmp_path, 240, nproc=3)
    assert code == 0, f"exit {code} (None: hung, killed after 240 s)\n{log[-3000:]}"
    m = _metrics(out)
    row = m["history"][-1]
    assert row["val_samples"] == 17
    from dali_aug.loader import Loader
    from dali_aug.train import Trainer

    model = build_model(m["args"]["model"], len(m["classes"]))
    model.load_state_dict(torch.load(out / "model.pt"))
    val = Loader(data / "val", train=False, batch_size=8, size=32, device="cpu")
    whole = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.0)).evaluate(val)
    assert whole["val_samples"] == 17
    assert row["val_acc"] == whole["val_acc"]
    # the ranks run other batch compositions: float32 convolutions differ by ~3e-5 relative
    assert row["val_loss"] == pytest.approx(whole["val_loss"], rel=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("truncated", [False, True])
def test_torchrun_three_ranks_uneven_shards_finish(tmp_path: Path, truncated: bool) -> None:
    """Regression: 37 images at batch 1 over 3 ranks gave 12/12/13 steps and the run hung;
    36 images with one truncated file hung too (that rank lost a whole batch). Every rank now
    takes the same number of steps."""
    n = 36 if truncated else 37
    data = make_shapes(tmp_path / "data", n, seed=8, size=32)
    if truncated:
        victim = sorted((data / "circle").iterdir())[0]
        victim.write_bytes(victim.read_bytes()[:40])
    out = tmp_path / "ddp3"
    code, log = _torchrun(data, out, tmp_path, 180, "--batch-size", "1", "--epochs", "2",
                          nproc=3)  # fmt: skip
    assert code == 0, f"exit {code} (None: hung, killed after 180 s)\n{log[-3000:]}"
    m = _metrics(out)
    assert m["world_size"] == 3 and len(m["history"]) == 2
    assert m["history"][0]["images"] == math.ceil(n / 3)  # rank 0: padded like DistributedSampler
    if truncated:  # on rank 0's shard or not: never more than the one file
        assert m["skipped"] in ([str(victim)], [])


_DDP_KEEP = """
import sys, torch, torch.distributed as dist
from dali_aug.batch import Batch
from dali_aug.methods.keep import KeepMethod
from dali_aug.models import build_model
from dali_aug.train import Trainer
dist.init_process_group("gloo")
rank = dist.get_rank()
torch.manual_seed(0)  # the same initial weights on every rank
model = build_model("small", 4)
keep = KeepMethod(model, 4, saliency_mode="early", seed=rank)
trainer = Trainer(model, torch.optim.AdamW(model.parameters(), lr=1e-2), methods=[keep])
g = torch.Generator().manual_seed(100 + rank)  # each rank its own data
for _ in range(4):
    x = torch.randn(8, 3, 32, 32, generator=g)
    y = torch.randint(0, 4, (8,), generator=g)
    trainer.step(Batch(x, y, torch.arange(8)))
params = {k: v.detach() for k, v in model.named_parameters()}  # buffers: rank-local stats
torch.save({"head": keep.early_head.state_dict(), "model": params}, f"{sys.argv[1]}/rank{rank}.pt")
dist.barrier()
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_torchrun_keeps_the_early_head_identical_on_every_rank(tmp_path: Path) -> None:
    """Regression: the early head was outside the DDP wrapper, so its gradients were never
    averaged and the ranks' heads drifted apart. The Trainer now wraps the model and the
    methods' modules in one DDP: after training they are bitwise equal on both ranks."""
    script = tmp_path / "ddp_keep.py"
    script.write_text(_DDP_KEEP)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(script), str(tmp_path)]  # fmt: skip
    code, log = _run(cmd, env, tmp_path, 180)
    assert code == 0, log[-3000:]
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for part in ("head", "model"):
        for k, v in a[part].items():
            assert torch.equal(v, b[part][k]), (part, k)
    start = build_model("small", 4).state_dict()  # the head did train (it is not the init)
    assert not torch.equal(a["model"]["head.weight"], start["head.weight"])


# -- resume, checkpoints, run records ----------------------------------------------------------
@pytest.mark.slow
def test_resume_with_more_epochs_continues_the_schedule(shapes_dir: Path, tmp_path: Path) -> None:
    """Regression: resuming with a larger --epochs restored the old cosine schedule (lr 0 in
    the first resumed epoch) and ignored a new --lr."""
    out = tmp_path / "run"
    assert _train(shapes_dir, out, "--epochs", "2", "--lr", "0.002") == 0
    assert _train(shapes_dir, out, "--epochs", "4", "--lr", "0.002", "--resume") == 0
    lrs = [r["lr"] for r in _metrics(out)["history"]]
    want = [0.002 * 0.5 * (1 + math.cos(math.pi * e / n)) for e, n in
            ((0, 2), (1, 2), (2, 4), (3, 4))]  # fmt: skip
    assert lrs == pytest.approx(want)
    assert lrs[2] > 0.0
    assert _train(shapes_dir, out, "--epochs", "5", "--lr", "0.01", "--resume") == 0
    assert _metrics(out)["history"][-1]["lr"] == pytest.approx(0.01 * 0.5 * (1 + math.cos(
        math.pi * 4 / 5)))  # fmt: skip


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--seed", "3"), ("--policy", "none"), ("--batch-size", "8"), ("--model", "resnet18")],
)
def test_resume_refuses_a_changed_run_flag(
    shapes_dir: Path, tmp_path: Path, flag: str, value: str
) -> None:
    out = tmp_path / "run"
    assert _train(shapes_dir, out, "--epochs", "1", "--max-epochs-this-run", "1") == 0
    with pytest.raises(SystemExit, match=f"--resume: {flag} is"):
        _train(shapes_dir, out, "--epochs", "2", "--resume", flag, value)


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def test_crafted_checkpoints_run_no_code(shapes_dir: Path, tmp_path: Path) -> None:
    """Regression: --resume and show --checkpoint loaded with weights_only=False, and a
    crafted checkpoint ran os.system on both paths."""
    out = tmp_path / "run"
    out.mkdir()
    marker = tmp_path / "pwned"
    torch.save({"model": _Evil(marker), "epoch": 0}, out / "checkpoint.pt")
    with pytest.raises(SystemExit, match="never code"):
        _train(shapes_dir, out, "--epochs", "1", "--resume")
    show = ["show", "--data", str(shapes_dir), "--size", "32", "--out", str(tmp_path / "s"),
            "--method", "keep", "--checkpoint", str(out / "checkpoint.pt")]  # fmt: skip
    with pytest.raises(SystemExit, match="never code"):
        main(show)
    assert not marker.exists()


def test_run_records_and_the_exported_model(shapes_dir: Path, tmp_path: Path) -> None:
    """run.json at the start, one JSON line per epoch (with named loss terms, img/s and the
    data wait), model.pt: the bare model, loadable with strict=True."""
    out = tmp_path / "run"
    argv = ["--epochs", "2", "--method", "keep", "--saliency", "early", "--amp", "bf16"]
    assert _train(shapes_dir, out, *argv) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["args"]["method"] == ["keep"] and run["world_size"] == 1
    lines = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    for row in lines:
        assert row["loss/early"] > 0 and row["img_per_s"] > 0 and row["data_seconds"] >= 0
    assert lines == _metrics(out)["history"]
    model = build_model("small", 4)
    model.load_state_dict(torch.load(out / "model.pt", weights_only=True), strict=True)


def test_a_new_method_is_a_folder_and_one_registry_line(
    shapes_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The --method choices come from dali_aug.methods.REGISTRY: a toy method package (its
    cli module in a temporary folder) registered with one line trains from the CLI."""
    pkg = tmp_path / "toy_method"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "cli.py").write_text(
        "import torch\n"
        "from dali_aug.train import Method\n"
        "HELP = 'toy: zero the first channel'\n"
        "class Toy(Method):\n"
        "    name = 'toy'\n"
        "    calls = 0\n"
        "    def augment(self, step, batch):\n"
        "        Toy.calls += 1\n"
        "        batch.images[:, 0] = 0\n"
        "        return batch\n"
        "def add_arguments(p):\n"
        "    p.add_argument('--toy-level', type=int, default=1)\n"
        "def build(args, ctx):\n"
        "    return Toy()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    from dali_aug import methods

    monkeypatch.setitem(methods.REGISTRY, "toy", "toy_method.cli")
    out = tmp_path / "run"
    assert _train(shapes_dir, out, "--epochs", "1", "--method", "toy", "--toy-level", "2") == 0
    import toy_method.cli as toy  # type: ignore[import-not-found]

    assert toy.Toy.calls == 4  # 64 images, batch 16


def test_a_method_asking_for_a_holdout_gets_validation_batches_from_it(
    shapes_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LoaderNeeds(holdout=f): the CLI holds out a stratified fraction of the training set,
    trains on the rest and gives the held-out samples to Step.val_batch (never the eval set)."""
    pkg = tmp_path / "holdout_method"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "cli.py").write_text(
        "from dali_aug.train import LoaderNeeds, Method\n"
        "HELP = 'records the indices of the training and validation batches'\n"
        "class Probe(Method):\n"
        "    name = 'probe'\n"
        "    trained, validated = [], []\n"
        "    def loader_needs(self):\n"
        "        return LoaderNeeds(holdout=0.25)\n"
        "    def loss(self, step, batch, out, loss):\n"
        "        Probe.trained += batch.indices.tolist()\n"
        "        Probe.validated += step.val_batch().indices.tolist()\n"
        "        return loss\n"
        "def add_arguments(p):\n"
        "    return None\n"
        "def build(args, ctx):\n"
        "    return Probe()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    from dali_aug import methods

    monkeypatch.setitem(methods.REGISTRY, "probe", "holdout_method.cli")
    out = tmp_path / "run"
    assert _train(shapes_dir, out, "--epochs", "1", "--method", "probe") == 0
    import holdout_method.cli as probe  # type: ignore[import-not-found]

    assert _metrics(out)["history"][0]["images"] == 48  # 64 - 16 held out
    assert len(probe.Probe.trained) == 48 and len(set(probe.Probe.trained)) == 48
    assert len(probe.Probe.validated) == 3 * 16  # 3 steps, a batch of 16 each
    # indices are positions in each loader's own source: the two sources are disjoint
    assert set(probe.Probe.validated) <= set(range(16))


def test_files_that_are_not_loaded_are_reported(
    shapes_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    shutil.copytree(shapes_dir, data)
    (data / "cross" / "notes.txt").write_text("not an image")
    (data / ".ipynb_checkpoints").mkdir()
    out = tmp_path / "run"
    assert _train(data, out, "--epochs", "1") == 0
    assert "not loaded: 1 file(s) or folder(s) in the class folders: cross/notes.txt" in (
        capsys.readouterr().out
    )
    ignored = {x["path"] for x in _metrics(out)["ignored"]}
    assert {"cross/notes.txt", ".ipynb_checkpoints"} <= ignored
    assert _metrics(out)["classes"] == list(SHAPE_CLASSES)  # the hidden folder is no class


@pytest.mark.slow
def test_an_interrupted_run_resumes_mid_epoch_to_the_same_weights(
    shapes_dir: Path, tmp_path: Path
) -> None:
    """--checkpoint-every N writes mid-epoch checkpoints (the loader's position and the
    epoch's running sums); a run stopped after 6 steps (the middle of epoch 2 of 4-step
    epochs) and resumed ends with exactly the weights and rows of an uninterrupted run."""
    straight, split = tmp_path / "straight", tmp_path / "split"
    common = ["--epochs", "3", "--method", "cutout", "--checkpoint-every", "2"]
    assert _train(shapes_dir, straight, *common) == 0
    assert _train(shapes_dir, split, *common, "--max-steps-this-run", "6") == 0
    state = torch.load(split / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1 and state["global_step"] == 6
    assert state["loader"]["batches_done"] == 2 and not state["loader"]["finished"]
    assert state["progress"]["steps"] == 2
    assert _train(shapes_dir, split, *common, "--resume") == 0
    a = torch.load(straight / "model.pt", weights_only=True)
    b = torch.load(split / "model.pt", weights_only=True)
    for k, v in a.items():
        assert torch.equal(v, b[k]), k
    rows_a, rows_b = _metrics(straight)["history"], _metrics(split)["history"]
    for x, y in zip(rows_a, rows_b, strict=True):
        assert x["images"] == y["images"] and x["train_loss"] == y["train_loss"]
