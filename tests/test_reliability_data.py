"""Reliability of the data inputs: packed shards whose index files were edited or whose pack
did not finish, loader states from another loader, and policy files out of bounds, each
refused with one clear error before any work (or any DALI pipeline) starts."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dali_aug.loader import Loader
from dali_aug.shards import MANIFEST, ShardSource, pack

N = 8  # packed samples, two shards of 4


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dali_aug.datasets import make_shapes

    root = tmp_path_factory.mktemp("rel-data")
    src = make_shapes(root / "src", N, seed=0, size=32)
    (report,) = pack(src, root / "out", shard_size=4, progress=False)
    assert report.samples == N
    return root / "out"


def _copy(packed: Path, tmp_path: Path, *, old_manifest: bool = False) -> Path:
    """A copy of the packed folder; ``old_manifest``: without the index checksums (a manifest
    written before they were recorded), so the index lines are checked one by one."""
    p = tmp_path / "shards"
    shutil.copytree(packed, p)
    if old_manifest:
        meta = json.loads((p / MANIFEST).read_text())
        for s in meta["shards"]:
            del s["index_sha256"]
        (p / MANIFEST).write_text(json.dumps(meta))
    return p


def _edit_index(p: Path, old: str, new: str, line: int = 1) -> None:
    """Replaces the first ``old`` token of ``line`` (1 = the first sample) of shard 0's index."""
    idx = p / "shard-00000.idx"
    lines = idx.read_text().splitlines(keepends=True)
    parts = lines[line].split(" ")
    parts[parts.index(old)] = new
    lines[line] = " ".join(parts)
    idx.write_text("".join(lines))


def _sample_size(p: Path) -> str:
    """The image size of the first sample in shard 0's index (the third token)."""
    return (p / "shard-00000.idx").read_text().splitlines()[1].split()[2]


_RUN = """
import sys
from dali_aug.loader import Loader
try:
    loader = Loader(sys.argv[1], batch_size=4, size=32, device="cpu", train=False)
    for batch in loader:
        pass
except ValueError as err:
    print("VALUEERROR", err, file=sys.stderr)
    sys.exit(3)
print("NO ERROR")
"""


def test_d1_an_index_with_an_edited_sample_size_is_refused_not_a_segfault(
    packed: Path, tmp_path: Path
) -> None:
    """D1: one sample size of a ``.idx`` edited (852 -> 100000) crashed DALI (rc 139). Run in
    a child process so that a crash cannot take the test run down (the other cases of the
    check run in-process: they open the folder only, no DALI pipeline)."""
    p = _copy(packed, tmp_path)
    _edit_index(p, _sample_size(p), "100000")
    run = subprocess.run(
        [sys.executable, "-c", _RUN, str(p)], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 3, (run.returncode, run.stdout, run.stderr[-2000:])
    assert "shard-00000.idx" in run.stderr and "re-pack" in run.stderr, run.stderr


def _garble(p: Path) -> None:
    (p / "shard-00000.idx").write_bytes(bytes(range(256)) * 2)


def _huge_key(p: Path) -> None:
    _edit_index(p, "00000000.jpg", f"{10**12}.jpg")


def _big_size(p: Path) -> None:
    _edit_index(p, _sample_size(p), "100000")


def _shifted_offset(p: Path) -> None:
    line = (p / "shard-00000.idx").read_text().splitlines()[2].split()
    _edit_index(p, line[1], str(int(line[1]) + 512), line=2)


def _reordered(p: Path) -> None:
    idx = p / "shard-00000.idx"
    head, a, b, *rest = idx.read_text().splitlines(keepends=True)
    idx.write_text("".join([head, b, a, *rest]))


@pytest.mark.parametrize("old_manifest", [False, True])
@pytest.mark.parametrize("damage", [_garble, _huge_key, _big_size, _shifted_offset, _reordered])
def test_d1_a_changed_index_file_is_a_value_error_before_dali_reads_it(
    packed: Path, tmp_path: Path, damage: object, old_manifest: bool
) -> None:
    """D1/D18: a garbled index (was a DALI RuntimeError or UnicodeDecodeError), a sample key
    of 10**12 (was an IndexError), sizes or offsets off, samples out of order: a ValueError
    when the folder is opened, naming the index file and the fix."""
    p = _copy(packed, tmp_path, old_manifest=old_manifest)
    damage(p)  # type: ignore[operator]
    with pytest.raises(ValueError, match=r"shard-00000\.idx.*re-pack") as err:
        ShardSource.load(p)
    assert "\n" not in str(err.value)


def test_d1_a_tar_member_naming_an_unknown_sample_is_a_value_error(
    packed: Path, tmp_path: Path
) -> None:
    """D18: the ``idx`` member inside a tar rewritten in place to 10**12 (same size): a
    ValueError naming the folder, not an IndexError on the labels."""
    p = _copy(packed, tmp_path)
    offset = int((p / "shard-00000.idx").read_text().splitlines()[1].split()[5])  # idx member
    with open(p / "shard-00000.tar", "r+b") as f:
        f.seek(offset)
        f.write(np.int64(10**12).astype("<i8").tobytes())
    loader = Loader(p, batch_size=4, size=32, device="cpu", train=False)
    with pytest.raises(ValueError, match=r"sample 1000000000000.*re-pack"):
        for _ in loader:
            pass


def test_d1_a_pack_that_did_not_finish_says_so(packed: Path, tmp_path: Path) -> None:
    """D18: tars and index files but no manifest (a ``pack`` killed half-way) said "no class
    subfolders"; a half-written manifest: both say the pack did not finish."""
    p = _copy(packed, tmp_path)
    (p / MANIFEST).unlink()
    with pytest.raises(ValueError, match=r"no dataset\.json: the pack did not finish.*dali-aug"):
        Loader(p, device="cpu")
    (p / MANIFEST).write_text(json.dumps({"format": "dali-aug-shards"})[:20])
    with pytest.raises(ValueError, match=r"pack did not finish.*dali-aug pack"):
        Loader(p, device="cpu")


_SAVED: dict[str, Any] = {"batch_size": 4, "seed": 0, "size": 32, "shuffle": True, "num_shards": 1}


@pytest.mark.parametrize(
    ("field", "other"),
    [("batch_size", 3), ("seed", 1), ("size", 40), ("shuffle", False), ("num_shards", 2)],
)
def test_d9_a_loader_state_from_other_settings_is_refused(
    shapes_dir: Path, field: str, other: object
) -> None:
    """D9: a mid-epoch state of a batch-4 loader loaded into a batch-3 one repeated samples;
    every setting the position depends on is checked, the error names it and both values."""
    saved = Loader(shapes_dir, device="cpu", shard_id=0, **_SAVED)
    state = {**saved.state_dict(), "batches_done": 1}
    settings: dict[str, Any] = {**_SAVED, field: other}
    resumed = Loader(shapes_dir, device="cpu", shard_id=0, **settings)
    want = f"{field}={_SAVED[field]!r} but this loader has {field}={other!r}"
    with pytest.raises(ValueError, match=want):
        resumed.load_state_dict(state)
    same = Loader(shapes_dir, device="cpu", shard_id=0, **_SAVED)
    same.load_state_dict(state)  # the same settings resume
    assert same._start == 1


def test_d9_an_old_state_without_settings_is_accepted_as_before(shapes_dir: Path) -> None:
    loader = Loader(shapes_dir, device="cpu", shard_id=0, **_SAVED)
    loader.load_state_dict({"epoch": 2, "batches_done": 1, "finished": False})
    assert loader.epoch == 2 and loader._start == 1


def _policy_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "policy.json"
    path.write_text(text)
    return str(path)


_RAND = {"type": "rand_augment", "n": 2, "m": 9, "mstd": 0.0, "prob": 1.0}
_SUBS = [[{"op": "Rotate", "prob": 0.5, "level": 3}], [{"op": "Color", "prob": 0.5, "level": 5}]]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({**_RAND, "n": 1_000_000}, "n=1000000 exceeds dali-aug's limit of 16"),
        ({**_RAND, "n": 1e9}, "n=1000000000.0 must be an int"),
        ({**_RAND, "mstd": float("nan")}, "mstd=nan is not finite"),
        ({**_RAND, "m": 10**400}, "m=.* is not finite"),
        ({"type": "trivial_augment_wide", "num_bins": 2.5}, "num_bins=2.5 is not an int"),
        (
            {"type": "policy", "sub_policies": [[_SUBS[0][0]] * 17]},
            "17 ops exceeds dali-aug's limit of 16",
        ),
        (
            {"type": "policy", "sub_policies": [_SUBS[0]] * 70_000},
            "70000 sub_policies exceed dali-aug's limit of 65536",
        ),
    ],
)
def test_d16_policy_files_out_of_bounds_are_one_line_errors(
    tmp_path: Path, data: dict[str, object], match: str
) -> None:
    """D16/D11/D18: ``n`` of 10**6 (ran for minutes), ``mstd: NaN`` (taken as 0), non-int
    ``num_bins`` (a TypeError deep in sampling), too many ops or sub-policies."""
    from dali_aug.policies import parse_policy, policy_from_dict

    with pytest.raises((ValueError, TypeError), match=match):
        policy_from_dict(data)
    path = _policy_file(tmp_path, json.dumps(data))
    with pytest.raises(ValueError, match=f"policy.json.*{match}") as err:
        parse_policy(path)
    assert "\n" not in str(err.value)


def test_d16_a_rand_name_with_a_huge_n_is_refused_at_once() -> None:
    from dali_aug.policies import parse_policy

    with pytest.raises(ValueError, match="n=1000000 exceeds dali-aug's limit of 16"):
        parse_policy("rand-m9-n1000000")
    assert parse_policy("rand-m9-n16").num_layers == 16


def test_d16_huge_equal_weights_are_a_uniform_draw_not_an_overflow() -> None:
    """D18: ``weights: [1e308, 1e308]`` raised OverflowError; they are valid (finite, >= 0)
    weights of an even draw."""
    from dali_aug.policies import Policy

    policy = Policy.from_dict({"type": "policy", "sub_policies": _SUBS, "weights": [1e308] * 2})
    assert policy.selection_probabilities().tolist() == [0.5, 0.5]
    assert policy.sample(8).op_ids.shape == (8, 1)


def test_d16_deeply_nested_json_is_a_value_error_naming_the_file(
    packed: Path, tmp_path: Path
) -> None:
    """D18: deeply nested JSON as ``--policy`` or as ``dataset.json`` raised RecursionError."""
    from dali_aug.policies import parse_policy

    deep = "[" * 200_000 + "]" * 200_000
    path = _policy_file(tmp_path, deep)
    with pytest.raises(ValueError, match=r"policy\.json' is nested too deeply"):
        parse_policy(path)
    p = _copy(packed, tmp_path)
    (p / MANIFEST).write_text(deep)
    with pytest.raises(ValueError, match=r"dataset\.json is nested too deeply.*dali-aug pack"):
        ShardSource.load(p)
