"""Tests for ``dali_aug.bench`` (``dali-aug bench``): ratios, the table, the goals, the JSON
record, the chart, failing peers reported with their reason, interleaved timing with a fake
clock, the flags, and a tiny real run of the peers that import in this environment."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from dali_aug.bench import (
    QUICK,
    SCHEMA,
    BenchConfig,
    PeerSpec,
    Row,
    Unavailable,
    add_arguments,
    compute_ratios,
    config_from_args,
    describe_error,
    format_table,
    measure,
    payload,
    run,
)
from dali_aug.bench._chart import draw_chart
from dali_aug.bench._data import jpeg_folder, make_jpegs
from dali_aug.cli import main as cli_main

E2E, AUG, RAND = "end-to-end", "augment", "rand-m9-n2"


def _row(name: str, runs: list[float], *, ours: bool = False, stage: Any = E2E) -> Row:
    return Row(stage, RAND, name, ours=ours, runs=runs)


# -- ratios, table, goals ------------------------------------------------------------------


def test_ratios_are_against_the_fastest_peer_of_the_block() -> None:
    rows = [
        _row("a. ours", [150.0, 140.0, 160.0], ours=True),
        _row("c. slow peer", [50.0]),
        _row("d. fast peer", [90.0, 100.0, 110.0]),
        Row(E2E, RAND, "e. broken peer", error="not importable: nope"),
        Row(AUG, "ta-wide", "ours alone", ours=True, runs=[10.0]),
    ]
    best = compute_ratios(rows)
    assert best[(E2E, RAND)] == "d. fast peer"
    assert best[(AUG, "ta-wide")] is None
    assert [r.ratio for r in rows] == [pytest.approx(1.5), pytest.approx(0.5), 1.0, None, None]


def test_a_faster_dali_aug_row_is_never_the_reference() -> None:
    rows = [_row("ours", [1000.0], ours=True), _row("peer", [10.0])]
    compute_ratios(rows)
    assert rows[1].ratio == 1.0 and rows[0].ratio == pytest.approx(100.0)


def test_table_shows_medians_spread_ratios_and_reasons() -> None:
    rows = [
        _row("a. dali-aug Loader", [300.0, 200.0, 250.0], ours=True),
        _row("c. DataLoader + torchvision v2", [100.0, 125.0]),
        Row(E2E, RAND, "d. DataLoader + timm", error="not importable: No module named 'timm'"),
    ]
    rows[0].note = "a note"
    compute_ratios(rows)
    text = format_table(rows)
    lines = text.splitlines()
    ours = next(line for line in lines if "a. dali-aug Loader" in line)
    assert ours.startswith("* ") and "250" in ours and "200-300" in ours and "2.22x" in ours
    assert ours.endswith("a note")
    peer = next(line for line in lines if "torchvision" in line)
    assert "112" in peer and "1.00x" in peer
    timm = next(line for line in lines if "timm" in line)
    assert "n/a" in timm and "No module named 'timm'" in timm
    assert "end-to-end | rand-m9-n2" in lines


def test_goals_use_the_fastest_of_c_and_d_and_the_named_stage_peers() -> None:
    from benchmarks.loader.throughput import format_goals, goals

    rows = [
        _row("a. dali-aug Loader (DALI policy)", [300.0], ours=True),
        _row("b. dali-aug Loader + torch", [100.0], ours=True),
        _row("c. DataLoader + torchvision v2", [150.0]),
        _row("d. DataLoader + timm", [200.0]),
        _row("e. DALI auto_aug", [1000.0]),  # not a c/d peer: ignored by the e2e goal
        _row("dali-aug (DALI backend)", [400.0], ours=True, stage=AUG),
        _row("dali-aug (torch backend)", [500.0], ours=True, stage=AUG),
        _row("DALI auto_aug", [250.0], stage=AUG),
        Row(AUG, RAND, "Kornia augmentation.auto", error="not importable: x"),
    ]
    got = goals(rows, "cuda")
    assert [g["ratio"] for g in got] == [pytest.approx(1.5), pytest.approx(0.5), 2.0, None]
    assert [g["met"] for g in got] == [True, False, True, None]
    text = format_goals(got)
    assert "1.50x (met)" in text and "0.50x (not met)" in text and "n/a (n/a)" in text


# -- measuring ------------------------------------------------------------------------------


class _FakePeer:
    def __init__(self, name: str, log: list[str], images: int = 10, fail_at: int = 0) -> None:
        self.name, self.log, self.images, self.fail_at = name, log, images, fail_at
        self.calls = 0
        self.closed = False

    def setup(self) -> None:
        self.log.append(f"setup {self.name}")

    def step(self) -> int:
        self.calls += 1
        self.log.append(f"step {self.name}")
        if self.calls == self.fail_at:
            raise RuntimeError("boom")
        return self.images

    def close(self) -> None:
        self.closed = True


def _raise(err: BaseException) -> Any:
    def factory() -> Any:
        raise err

    return factory


def test_measure_interleaves_rounds_and_reports_failures_with_reasons() -> None:
    log: list[str] = []
    ticks = iter(float(t) for t in range(1000))
    a, b, c = _FakePeer("A", log), _FakePeer("B", log, images=20), _FakePeer("C", log, fail_at=3)
    specs = [
        PeerSpec(E2E, RAND, "A", lambda: a, ours=True),
        PeerSpec(E2E, RAND, "missing", _raise(ImportError("No module named 'torchvision'"))),
        PeerSpec(E2E, RAND, "unavailable", _raise(Unavailable("needs a GPU"))),
        PeerSpec(E2E, RAND, "B", lambda: b),
        PeerSpec(E2E, RAND, "C", lambda: c),
    ]
    cfg = BenchConfig(rounds=3, warmup=1, threads=1)
    rows = measure(specs, cfg, log=lambda _: None, clock=lambda: next(ticks))
    steps = [line for line in log if line.startswith("step")]
    # warm-up A, B, C (C's warm-up is its first call), then rounds interleaved A B C, A B C, ...
    assert steps == ["step A", "step B", "step C"] + ["step A", "step B", "step C"] * 2 + [
        "step A",
        "step B",
    ]
    assert rows[0].runs == [10.0, 10.0, 10.0]  # the fake clock ticks 1 s per call
    assert rows[3].runs == [20.0, 20.0, 20.0]
    assert rows[1].error == "not importable: No module named 'torchvision'" and not rows[1].runs
    assert rows[2].error == "needs a GPU"
    assert rows[4].error == "failed in round 2: RuntimeError: boom" and rows[4].runs == [10.0]
    assert rows[4].median is None
    assert a.closed and b.closed and c.closed


def test_describe_error_is_one_short_line() -> None:
    assert describe_error(ValueError("a\n  b")) == "ValueError: a b"
    assert len(describe_error(RuntimeError("x" * 500))) < 200
    assert describe_error(ImportError("gone")) == "not importable: gone"


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="rounds"):
        BenchConfig(rounds=0)
    with pytest.raises(ValueError, match="device"):
        BenchConfig(device="tpu")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="stages"):
        BenchConfig(stages=("everything",))  # type: ignore[arg-type]


# -- record, chart, flags ---------------------------------------------------------------------


def test_payload_is_json_with_machine_versions_settings_and_every_run(tmp_path: Path) -> None:
    rows = [_row("ours", [3.0, 1.0, 2.0], ours=True), Row(E2E, RAND, "gone", error="why")]
    compute_ratios(rows)
    cfg = BenchConfig(images=8, threads=2, data=tmp_path)
    record = json.loads(json.dumps(payload(cfg, rows, {"wall_s": 1.0})))
    assert record["schema"] == SCHEMA
    assert {"platform", "cpu_count", "python", "device"} <= set(record["machine"])
    assert {"torch", "nvidia.dali", "kornia", "torchvision", "timm", "dali_aug"} <= set(
        record["versions"]
    )
    assert record["settings"]["images"] == 8 and record["settings"]["threads"] == 2
    assert record["settings"]["data"] == str(tmp_path) and record["settings"]["wall_s"] == 1.0
    first, second = record["rows"]
    assert first["runs"] == [3.0, 1.0, 2.0] and first["median"] == 2.0
    assert (first["min"], first["max"]) == (1.0, 3.0)
    assert second["error"] == "why" and second["median"] is None
    assert "goals" not in record  # the project's goals live in the lab script


def test_chart_is_a_png_with_one_line_per_row(tmp_path: Path) -> None:
    rows = [_row("ours", [3.0, 1.0, 2.0], ours=True), Row(E2E, RAND, "gone", error="why")]
    compute_ratios(rows)
    path = draw_chart(rows, tmp_path / "sub" / "chart.png")
    with Image.open(path) as img:
        assert img.format == "PNG" and img.width > 500 and img.height > 60


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args(list(argv))


def test_quick_presets_and_explicit_flags_win() -> None:
    cfg = config_from_args(_args("--quick", "--rounds", "7", "--device", "cpu"))
    assert cfg.rounds == 7 and cfg.images == QUICK["images"] and cfg.device == "cpu"
    full = config_from_args(_args("--device", "cpu", "--stages", "augment"))
    assert full.images == BenchConfig().images and full.stages == ("augment",)


def test_cli_bench_quick_help_parses(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["bench", "--quick", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--quick" in out and "--profile" in out


def test_cli_bench_rejects_bad_values(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["bench", "--rounds", "0", "--device", "cpu"]) == 2
    assert "rounds" in capsys.readouterr().out


def test_jpeg_folder_is_generated_once_and_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DALI_AUG_CACHE", str(tmp_path))
    root = jpeg_folder(4, seed=3)
    files = sorted(root.glob("*/*.jpg"))
    assert len(files) == 4 and {f.parent.name for f in files} == {"c0", "c1"}
    with Image.open(files[0]) as img:
        assert 400 <= img.width <= 500 and 400 <= img.height <= 500
    stamp = files[0].stat().st_mtime_ns
    assert jpeg_folder(4, seed=3) == root and files[0].stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="not a folder"):
        jpeg_folder(4, data=tmp_path / "missing")


# -- a tiny real run ------------------------------------------------------------------------


def test_tiny_run_times_what_imports_and_explains_the_rest(tmp_path: Path) -> None:
    from dali_aug.bench._e2e import end_to_end_specs
    from dali_aug.bench._stage import resident_batch, stage_specs

    root = make_jpegs(tmp_path / "jpegs", 8, seed=1)
    cfg = BenchConfig(
        images=8,
        batch_size=4,
        stage_batch=4,
        size=32,
        rounds=1,
        warmup=0,
        stage_min_s=0.0,
        threads=1,
        device="cpu",
        data=root,
    )
    e2e = end_to_end_specs(root, cfg)
    stage = stage_specs(lambda: resident_batch(root, 4, 32, "cpu"), cfg)
    wanted = {"a.", "c.", "dali-aug (torch backend)", "torchvision v2 (batched call)"}
    specs = [
        s for s in e2e + stage if s.policy == RAND and any(s.name.startswith(w) for w in wanted)
    ]
    seen: list[int] = []

    def annotate(got: list[Row], rec: dict[str, Any]) -> None:  # what the lab's script does
        seen.append(len(got))
        rec["note"] = "added before writing"

    rows, record = run(
        cfg, out=tmp_path / "r.json", chart=tmp_path / "r.png", specs=specs, annotate=annotate
    )
    assert seen == [len(rows)]
    by_name = {r.name: r for r in rows}
    loader = by_name["a. dali-aug Loader (DALI policy)"]
    assert loader.error is None and len(loader.runs) == 1 and loader.runs[0] > 0
    torch_stage = by_name["dali-aug (torch backend)"]
    assert torch_stage.error is None and torch_stage.runs[0] > 0
    for name in ("c. DataLoader + torchvision v2", "torchvision v2 (batched call)"):
        row = by_name[name]  # torchvision may or may not import in this environment
        assert (row.error is None and row.runs) or (row.error and "torchvision" in row.error)
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(record["rows"]))
    assert saved["note"] == "added before writing"
    assert (tmp_path / "r.png").is_file()
