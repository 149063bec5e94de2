"""Bad inputs through the whole ``dali-aug train`` command: each stops the run before any
training with one line that names the input (the data-file inputs of the reliability review;
the argument inputs are in test_reliability_cli.py), and the sample preview on data smaller
than its batch."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from dali_aug.cli import _show, main
from dali_aug.loader import Loader, LoaderConfig
from dali_aug.shards import MANIFEST, pack
from dali_aug.sources import ArraySource

FAST = ["--size", "32", "--batch-size", "4", "--epochs", "1", "--no-progress"]


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DALI_AUG_CACHE", str(tmp_path / "cache"))
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dali_aug.datasets import make_shapes

    root = tmp_path_factory.mktemp("inputs")
    src = make_shapes(root / "src", 8, seed=0, size=32)
    pack(src, root / "out", shard_size=4, progress=False)
    return root / "out"


def _copy_packed(packed: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(packed, tmp_path / "shards"))


def _garbled_index(packed: Path, tmp_path: Path, _: pytest.MonkeyPatch) -> list[str]:
    p = _copy_packed(packed, tmp_path)
    (p / "shard-00000.idx").write_bytes(b"\xff\xfe garbage \x00\x01\n")
    return ["--data", str(p)]


def _huge_key(packed: Path, tmp_path: Path, _: pytest.MonkeyPatch) -> list[str]:
    p = _copy_packed(packed, tmp_path)
    idx = p / "shard-00000.idx"
    lines = idx.read_text().splitlines(keepends=True)
    first = lines[1].split(" ")
    key = first[3].split(".")[0]
    lines[1] = lines[1].replace(key, str(10**12))
    idx.write_text("".join(lines))
    return ["--data", str(p)]


def _unfinished_pack(packed: Path, tmp_path: Path, _: pytest.MonkeyPatch) -> list[str]:
    p = _copy_packed(packed, tmp_path)
    (p / MANIFEST).unlink()
    return ["--data", str(p)]


def _nested_manifest(packed: Path, tmp_path: Path, _: pytest.MonkeyPatch) -> list[str]:
    p = _copy_packed(packed, tmp_path)
    (p / MANIFEST).write_text("[" * 100_000 + "]" * 100_000)
    return ["--data", str(p)]


def _policy(text: str) -> Callable[[Path, Path, pytest.MonkeyPatch], list[str]]:
    def make(_: Path, tmp_path: Path, __: pytest.MonkeyPatch) -> list[str]:
        f = tmp_path / "policy.json"
        f.write_text(text)
        return ["--policy", str(f)]

    return make


def _csv(encoding: str) -> Callable[[Path, Path, pytest.MonkeyPatch], list[str]]:
    def make(_: Path, tmp_path: Path, __: pytest.MonkeyPatch) -> list[str]:
        from PIL import Image

        root = tmp_path / "multi"
        root.mkdir()
        for i in range(4):
            Image.new("RGB", (32, 32), (40 * i, 0, 0)).save(root / f"{i}.png")
        rows = "path,labels\n" + "".join(f"{i}.png,caf\u00e9 b\n" for i in range(4))
        (root / "labels.csv").write_bytes(rows.encode(encoding))
        return ["--data", str(root), "--multi-label"]

    return make


def _unreadable_root(_: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    root = tmp_path / "locked"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    real = os.scandir

    def scandir(path: Any = ".") -> Any:
        if os.path.realpath(path) == os.path.realpath(root):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    return ["--data", str(root)]


CASES: dict[str, tuple[Callable[[Path, Path, pytest.MonkeyPatch], list[str]], str]] = {
    "garbled .idx": (_garbled_index, "shard-00000.idx"),
    ".idx sample key 10**12": (_huge_key, "shard-00000.idx"),
    "pack killed half-way": (_unfinished_pack, "did not finish"),
    "deeply nested dataset.json": (_nested_manifest, "nested too deeply"),
    "policy n 1e9": (_policy('{"type": "rand_augment", "n": 1e9, "m": 9}'), "policy.json"),
    "policy mstd NaN": (_policy('{"type": "rand_augment", "n": 2, "mstd": NaN}'), "policy.json"),
    "policy num_bins 2.5": (
        _policy('{"type": "trivial_augment_wide", "num_bins": 2.5}'),
        "num_bins",
    ),
    "deeply nested policy": (_policy("[" * 100_000 + "]" * 100_000), "nested too deeply"),
    "labels.csv in Latin-1": (_csv("latin-1"), "UTF-8"),
    "labels.csv in UTF-16": (_csv("utf-16"), "UTF-8"),
    "unreadable data root": (_unreadable_root, "locked"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_data_files_stop_the_run_with_one_line_naming_them(
    case: str,
    packed: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make, needle = CASES[case]
    argv = make(packed, tmp_path, monkeypatch)
    out = tmp_path / "run"
    if "--data" not in argv:  # a policy case: any small folder of images
        from dali_aug.datasets import make_shapes

        argv += ["--data", str(make_shapes(tmp_path / "imgs", 8, seed=1, size=32))]
    try:  # the CLI exits with a message or returns its exit code after printing it
        code: object = main(["train", "--out", str(out), *FAST, *argv])
        message = ""
    except SystemExit as exc:
        code, message = exc.code, exc.code if isinstance(exc.code, str) else ""
    printed = capsys.readouterr()
    message = message or printed.err or printed.out
    lines = [x for x in str(message).strip().splitlines() if x]
    assert code not in (0, None), message
    assert len(lines) == 1 and "error" in lines[0], message
    assert needle in lines[0], lines[0]
    assert not (out / "model.pt").exists()


def test_the_sample_preview_of_fewer_images_than_its_batch(tmp_path: Path) -> None:
    """Under torchrun the training loader drops the last partial batch; the preview of 32
    must still show the 20 images there are (it raised StopIteration)."""
    images = np.random.default_rng(0).integers(0, 255, (20, 32, 32, 3), dtype=np.uint8)
    source = ArraySource.from_arrays(images, torch.arange(20) % 2)
    train = Loader(source, config=LoaderConfig(batch_size=16, size=32, drop_last=True))

    class Args:
        out = str(tmp_path / "run")

    path = _show(Args(), train)  # type: ignore[arg-type]
    assert path.is_file()
