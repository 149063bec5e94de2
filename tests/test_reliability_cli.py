"""Reliability of ``dali-aug train``: argument checks at the edge, empty epochs, the run
folder (no silent overwrite, a lock), failed checkpoint writes, resume checks and the
distributed timeout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dali_aug._run_folder import LOCK_NAME
from dali_aug.cli import _lock, _unlock, main

FAST = ["--size", "32", "--batch-size", "16", "--no-progress"]


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DALI_AUG_CACHE", str(tmp_path / "cache"))
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)


@pytest.mark.parametrize(
    ("flag", "value", "extra"),
    [
        ("--epochs", "0", []),
        ("--epochs", "-2", []),
        ("--size", "0", []),
        ("--size", "1", []),
        ("--size", "8", ["--method", "keep"]),
        ("--lr", "-1", []),
        ("--lr", "nan", []),
        ("--batch-size", "0", []),
        ("--checkpoint-every", "0", []),
        ("--seed", "99999999999999999999", []),
    ],
)
def test_bad_train_arguments_exit_with_one_line(
    flag: str,
    value: str,
    extra: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "run"
    argv = ["train", "--out", str(out), "--no-progress", *extra, flag, value]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    message = err[-1]
    assert message.startswith("dali-aug: error:") or message.startswith("dali-aug train: error:")
    assert flag in message and value in message, message
    assert not out.exists()  # checked before any work: no folder, no data generated
    assert not (tmp_path / "cache").exists()
    if extra:
        assert "keep" in message and "32" in message


def test_zero_steps_per_epoch_is_an_error(
    shapes_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # as under torchrun with 2 ranks (drop_last), but one process: 64 samples < batch 128
    import dali_aug.cli as cli

    monkeypatch.setattr(cli, "init_from_env", lambda **_: (0, 2))
    out = tmp_path / "run"
    argv = ["train", "--data", str(shapes_dir), "--out", str(out), "--size", "32"]
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--batch-size", "128", "--no-progress", "--epochs", "1"])
    message = str(exc.value.code)
    assert "0 steps" in message and "--batch-size 128" in message and "64" in message
    assert "\n" not in message
    assert not (out / "model.pt").exists()


def _train(data: Path, out: Path, *extra: str) -> int:
    return main(["train", "--data", str(data), "--out", str(out), *FAST, *extra])


def _rows(out: Path) -> list[int]:
    lines = (out / "history.jsonl").read_text().splitlines()
    return [json.loads(x)["epoch"] for x in lines]


def _fake_run(out: Path) -> bytes:
    """A run folder as a 6-epoch run leaves it (the refusal comes before any work)."""
    out.mkdir(parents=True)
    (out / "checkpoint.pt").write_bytes(b"a checkpoint")
    rows = [json.dumps({"epoch": e}) for e in range(1, 7)]
    (out / "history.jsonl").write_text("".join(f"{r}\n" for r in rows))
    return (out / "checkpoint.pt").read_bytes()


def test_a_second_run_in_the_same_folder_is_refused(shapes_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    before = _fake_run(out)
    with pytest.raises(SystemExit) as exc:
        _train(shapes_dir, out, "--epochs", "1")
    message = str(exc.value.code)
    assert "--resume" in message and "--overwrite" in message and str(out) in message
    assert "\n" not in message
    assert _rows(out) == [1, 2, 3, 4, 5, 6]  # nothing destroyed
    assert (out / "checkpoint.pt").read_bytes() == before
    assert not (out / LOCK_NAME).exists()  # the lock is released on the refusal


@pytest.mark.slow
def test_overwrite_replaces_the_run(shapes_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    _fake_run(out)
    assert _train(shapes_dir, out, "--epochs", "1", "--overwrite") == 0
    assert _rows(out) == [1]
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 1


def test_a_locked_run_folder_is_refused_and_a_stale_lock_taken_over(
    shapes_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    lock = out / LOCK_NAME
    lock.write_text(f"{os.getpid()}\n")  # a live process holds it
    with pytest.raises(SystemExit) as exc:
        _train(shapes_dir, out, "--epochs", "1")
    message = str(exc.value.code)
    assert str(out) in message and str(os.getpid()) in message and "\n" not in message
    assert lock.read_text().strip() == str(os.getpid())  # not taken, not removed
    assert not (out / "checkpoint.pt").exists()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock.write_text(f"{dead.pid}\n")  # its process is gone: stale
    (out / "history.jsonl").write_text("")  # a run: refused after the lock was taken
    with pytest.raises(SystemExit, match="already holds a run"):
        _train(shapes_dir, out, "--epochs", "1")
    assert not lock.exists()  # taken over, then released
    taken = _lock(out)
    assert taken.read_text().strip() == str(os.getpid())
    _unlock(taken)
    assert not taken.exists()


@pytest.mark.slow
def test_a_failed_checkpoint_write_leaves_no_temp_file_and_no_duplicate_row(
    shapes_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    real_save = torch.save
    calls = {"n": 0}

    def full_disk(obj: object, f: object, *args: object, **kwargs: object) -> None:
        if str(f).endswith(".tmp") and "checkpoint.pt." in str(f):  # the checkpoint's write
            calls["n"] += 1
            if calls["n"] == 2:  # the end of epoch 2: a partial file, then ENOSPC
                Path(str(f)).write_bytes(b"partial")
                raise OSError(28, "No space left on device")
        real_save(obj, f, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(SystemExit) as exc:
        _train(shapes_dir, out, "--epochs", "3")
    message = str(exc.value.code)
    assert "disk full?" in message and str(out / "checkpoint.pt") in message
    assert "\n" not in message
    assert not list(out.glob("*.tmp"))
    monkeypatch.setattr(torch, "save", real_save)
    assert _train(shapes_dir, out, "--epochs", "3", "--resume") == 0
    assert _rows(out) == [1, 2, 3]  # epoch 2 ran again; its first row is not kept twice


@pytest.mark.slow
def test_a_mid_epoch_resume_logs_the_new_lr(shapes_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = ["--epochs", "1", "--lr", "0.002", "--checkpoint-every", "1"]
    assert _train(shapes_dir, out, *first, "--max-steps-this-run", "1") == 0
    assert _train(shapes_dir, out, "--epochs", "1", "--lr", "0.01", "--resume") == 0
    rows = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1]
    assert rows[0]["lr"] == pytest.approx(0.01)


@pytest.mark.slow
def test_resume_compares_the_data_not_the_data_string(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dali_aug.datasets import make_shapes

    monkeypatch.chdir(tmp_path)
    make_shapes(tmp_path / "data", 16, seed=1, size=32)
    out = tmp_path / "run"
    first = ["--epochs", "2", "--max-epochs-this-run", "1"]
    assert main(["train", "--data", "data", "--out", str(out), *FAST, *first]) == 0
    # the same folder as an absolute path: the same data, accepted
    rest = ["--epochs", "2", "--resume", "--max-epochs-this-run", "0"]
    assert main(["train", "--data", str(tmp_path / "data"), "--out", str(out), *FAST, *rest]) == 0
    make_shapes(tmp_path / "more", 8, seed=2, size=32)  # images added to the data folder
    for cls in (c for c in (tmp_path / "more").iterdir() if c.is_dir()):
        for image in cls.iterdir():
            image.rename(tmp_path / "data" / cls.name / f"added-{image.name}")
    with pytest.raises(SystemExit) as exc:
        main(["train", "--data", "data", "--out", str(out), *FAST, "--epochs", "2", "--resume"])
    message = str(exc.value.code)
    assert "16 samples then, 24 now" in message and "\n" not in message


def test_the_dist_timeout_reaches_the_process_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datetime

    from dali_aug import _dist

    seen: dict[str, object] = {}

    def init(backend: str, **kwargs: object) -> None:
        seen.update(backend=backend, **kwargs)
        raise SystemExit("stop here")  # nothing else of the run is needed

    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.distributed, "init_process_group", init)
    argv = ["train", "--out", str(tmp_path / "run"), "--device", "cpu", "--dist-timeout", "42"]
    with pytest.raises(SystemExit, match="stop here"):
        main(argv)
    assert seen == {"backend": "gloo", "timeout": datetime.timedelta(seconds=42)}
    seen.clear()
    with pytest.raises(SystemExit, match="stop here"):
        main(argv[:-2])
    assert seen["timeout"] == datetime.timedelta(seconds=_dist.DEFAULT_TIMEOUT_S)
