"""Tests for dali_aug.sources: the folder walk (nested, hidden, ignored files), the image
formats and :func:`looks_valid`, the label CSV (BOM, malformed rows, paths outside the root),
and ``ArraySource`` (non-contiguous arrays, label checks). Synthetic data only."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from nvidia.dali import fn, pipeline_def, types
from PIL import Image

from dali_aug.loader import Loader
from dali_aug.sources import (
    LOADED_SUFFIXES,
    ArraySource,
    CsvSource,
    FolderSource,
    Ignored,
    IgnoreReason,
    looks_valid,
    open_source,
)

SIZE = 16
CPU: dict[str, Any] = {"device": "cpu", "size": SIZE}
#: PIL format name and save options of each suffix the tests write
FORMATS: dict[str, tuple[str, dict[str, Any]]] = {
    ".jpg": ("JPEG", {}),
    ".png": ("PNG", {}),
    ".webp": ("WEBP", {"lossless": True}),
    ".bmp": ("BMP", {}),
    ".tif": ("TIFF", {}),
    ".tiff": ("TIFF", {"compression": "tiff_lzw"}),
    ".gif": ("GIF", {}),
}


def _encode(suffix: str, seed: int = 0, h: int = 20, w: int = 24) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    pixels[: h // 2] = (200, 40, 30)
    fmt, options = FORMATS[suffix]
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, fmt, **options)
    return buf.getvalue()


def _write(path: Path, data: bytes | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_encode(path.suffix.lower()) if data is None else data)
    return path


def _reasons(src: FolderSource) -> dict[str, IgnoreReason]:
    return {i.path: i.reason for i in src.ignored}


# -- the folder walk -------------------------------------------------------------------------
def test_nested_subfolders_are_loaded_with_the_top_level_label(tmp_path: Path) -> None:
    """Recursive like torchvision's ``make_dataset`` (``sorted(os.walk(...))``): folders
    sorted by path string (so ``sub-x`` before ``sub/deeper``), then files by name; every
    image is labelled by its top-level class folder."""
    for rel in [
        "cat/b.jpg",
        "cat/a.png",
        "cat/sub/deeper/c.jpg",
        "cat/sub/d.jpg",
        "cat/sub-x/e.jpg",
        "dog/x/y/z.jpg",
    ]:
        _write(tmp_path / rel)
    src = FolderSource.scan(tmp_path)
    assert src.classes == ("cat", "dog")
    want = [
        "cat/a.png",
        "cat/b.jpg",
        "cat/sub/d.jpg",
        "cat/sub-x/e.jpg",
        "cat/sub/deeper/c.jpg",
        "dog/x/y/z.jpg",
    ]
    assert list(src.paths) == [os.path.join(*p.split("/")) for p in want]
    assert src.targets.tolist() == [0, 0, 0, 0, 0, 1]
    assert src.targets.dtype == torch.int64
    assert src.ignored == ()
    assert src.read(4) == (tmp_path / "cat/sub/deeper/c.jpg").read_bytes()


def test_hidden_folders_and_files_are_skipped_and_listed(tmp_path: Path) -> None:
    """Our choice (torchvision's ``find_classes`` keeps hidden folders as classes): hidden
    folders are neither classes nor walked, hidden files are not loaded; both are listed."""
    _write(tmp_path / "cat/a.jpg")
    _write(tmp_path / "dog/b.jpg")
    _write(tmp_path / ".ipynb_checkpoints/c.jpg")
    _write(tmp_path / ".git/objects/d.jpg")
    _write(tmp_path / "cat/.ipynb_checkpoints/e.jpg")
    _write(tmp_path / "cat/.hidden.jpg")
    (tmp_path / "dog/.DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    src = FolderSource.scan(tmp_path)
    assert src.classes == ("cat", "dog")
    assert list(src.paths) == [os.path.join("cat", "a.jpg"), os.path.join("dog", "b.jpg")]
    assert _reasons(src) == {
        ".git": IgnoreReason.HIDDEN,
        ".ipynb_checkpoints": IgnoreReason.HIDDEN,
        os.path.join("cat", ".ipynb_checkpoints"): IgnoreReason.HIDDEN,
        os.path.join("cat", ".hidden.jpg"): IgnoreReason.HIDDEN,
        os.path.join("dog", ".DS_Store"): IgnoreReason.HIDDEN,
    }


def test_only_hidden_folders_is_no_class(tmp_path: Path) -> None:
    _write(tmp_path / ".ipynb_checkpoints/c.jpg")
    with pytest.raises(ValueError, match="no class subfolders.*hidden"):
        FolderSource.scan(tmp_path)


def test_symlinked_folder_is_walked_once(tmp_path: Path) -> None:
    _write(tmp_path / "cat/a.jpg")
    (tmp_path / "cat/loop").symlink_to(tmp_path / "cat", target_is_directory=True)
    src = FolderSource.scan(tmp_path)
    assert list(src.paths) == [os.path.join("cat", "a.jpg")]
    assert _reasons(src) == {os.path.join("cat", "loop"): IgnoreReason.WALKED}


# -- formats ---------------------------------------------------------------------------------
def _dali_decode(data: bytes) -> np.ndarray:
    @pipeline_def(batch_size=1, num_threads=1, device_id=None)
    def pipe():  # type: ignore[no-untyped-def]
        enc = fn.external_source(source=lambda: [np.frombuffer(data, np.uint8)], batch=True)
        return fn.decoders.image(enc, device="cpu", output_type=types.RGB)

    p = pipe()
    p.build()
    return np.asarray(p.run()[0].as_tensor())[0]


@pytest.mark.parametrize("suffix", sorted(set(FORMATS) - {".gif"}))
def test_dali_cpu_decoder_reads_the_loaded_formats(suffix: str) -> None:
    """The experiment behind the format decisions: ``fn.decoders.image`` on the CPU decodes
    each loaded format exactly as PIL does (lossless encodings)."""
    assert suffix in LOADED_SUFFIXES
    data = _encode(suffix)
    if suffix == ".jpg":
        want = _dali_decode(data)  # lossy: compare only the shape
        assert want.shape == (20, 24, 3)
        return
    with Image.open(io.BytesIO(data)) as im:
        assert np.array_equal(_dali_decode(data), np.asarray(im.convert("RGB")))


def test_dali_cpu_decoder_does_not_read_gif() -> None:
    """Why GIFs are ignored (and reported) rather than loaded: if this starts passing
    decoding, load GIF (with its trailer check) instead."""
    assert ".gif" not in LOADED_SUFFIXES
    with pytest.raises(RuntimeError):
        _dali_decode(_encode(".gif"))


@pytest.mark.parametrize("suffix", LOADED_SUFFIXES)
def test_looks_valid_accepts_complete_and_rejects_truncated(suffix: str) -> None:
    key = ".jpg" if suffix == ".jpeg" else suffix
    data = _encode(key, h=64, w=64)
    assert looks_valid(data)
    for cut in (len(data) // 2, len(data) - 1):
        assert not looks_valid(data[:cut]), (suffix, cut)
    assert not looks_valid(b"")
    assert not looks_valid(data[:12])


def _big_endian_tiff(strip_bytes: int) -> bytes:
    """An uncompressed big-endian RGB TIFF 12x16 whose IFD follows the pixel data (libtiff's
    layout), with StripByteCounts ``strip_bytes``."""
    pixels = np.arange(16 * 12 * 3, dtype=np.uint8).tobytes()
    entries = [  # tag, type (SHORT=3, LONG=4), value; one value each
        (256, 3, 12),
        (257, 3, 16),
        (262, 3, 2),
        (273, 4, 8),
        (277, 3, 3),
        (278, 3, 16),
        (279, 4, strip_bytes),
    ]
    ifd = len(entries).to_bytes(2, "big")
    for tag, typ, value in entries:
        val = value.to_bytes(2, "big") + b"\0\0" if typ == 3 else value.to_bytes(4, "big")
        ifd += tag.to_bytes(2, "big") + typ.to_bytes(2, "big") + (1).to_bytes(4, "big") + val
    return b"MM\x00*" + (8 + len(pixels)).to_bytes(4, "big") + pixels + ifd + b"\0\0\0\0"


def test_looks_valid_tiff_big_endian_and_ifd_at_the_end() -> None:
    data = _big_endian_tiff(16 * 12 * 3)
    assert looks_valid(data)
    assert not looks_valid(data[:-1])  # the IFD is cut
    assert not looks_valid(_big_endian_tiff(len(data)))  # the strip runs past the end
    assert not looks_valid(data[:4] + (len(data)).to_bytes(4, "big") + data[8:])  # IFD offset


def test_looks_valid_rejects_other_content() -> None:
    assert not looks_valid(b"hello, world" * 10)
    assert not looks_valid(_encode(".gif"))
    assert not looks_valid(b"RIFF\x10\x00\x00\x00WAVEfmt ")  # RIFF, but not WebP


def test_formats_beside_jpegs_are_loaded_or_reported(tmp_path: Path) -> None:
    """WebP, BMP and TIFF load; GIF (not decoded by DALI) and other files are listed in
    ``ignored`` with the reason, and a GIF warns."""
    for suffix in LOADED_SUFFIXES:
        _write(tmp_path / "cat" / f"a{suffix}", _encode(".jpg" if suffix == ".jpeg" else suffix))
    _write(tmp_path / "cat/UPPER.WEBP", _encode(".webp"))
    _write(tmp_path / "dog/b.jpg")
    _write(tmp_path / "dog/c.gif")
    (tmp_path / "dog/notes.txt").write_text("hi")
    (tmp_path / "dog/Thumbs.db").write_bytes(b"\0" * 8)
    (tmp_path / "README.txt").write_text("a dataset")
    with pytest.warns(RuntimeWarning, match=r"1 GIF file.*ignored.*c\.gif"):
        src = FolderSource.scan(tmp_path)
    want = sorted(f"a{s}" for s in LOADED_SUFFIXES) + ["UPPER.WEBP"]
    assert list(src.paths) == [
        *(os.path.join("cat", n) for n in sorted(want)),
        os.path.join("dog", "b.jpg"),
    ]
    assert _reasons(src) == {
        "README.txt": IgnoreReason.NOT_IN_CLASS,
        os.path.join("dog", "c.gif"): IgnoreReason.NOT_DECODED,
        os.path.join("dog", "notes.txt"): IgnoreReason.SUFFIX,
        os.path.join("dog", "Thumbs.db"): IgnoreReason.SUFFIX,
    }
    assert all(isinstance(i, Ignored) for i in src.ignored)
    assert all(looks_valid(src.read(i)) for i in range(len(src)))


def test_loader_decodes_every_loaded_format(tmp_path: Path) -> None:
    """End to end: the train (ROI decode) and eval pipelines decode every loaded format."""
    for k, suffix in enumerate(LOADED_SUFFIXES):
        _write(tmp_path / "c" / f"{k}{suffix}", _encode(".jpg" if suffix == ".jpeg" else suffix))
    for train in (True, False):
        loader = Loader(tmp_path, batch_size=len(LOADED_SUFFIXES), train=train, **CPU)
        (batch,) = list(loader)
        assert batch.images.shape == (len(LOADED_SUFFIXES), 3, SIZE, SIZE)
        assert loader.skipped == []


# -- empty folders ---------------------------------------------------------------------------
def test_folder_without_subfolders(tmp_path: Path) -> None:
    _write(tmp_path / "a.jpg")
    with pytest.raises(ValueError, match="no class subfolders.*root/<class>/<image>"):
        FolderSource.scan(tmp_path)


def test_class_folders_all_empty(tmp_path: Path) -> None:
    (tmp_path / "cat/sub").mkdir(parents=True)
    (tmp_path / "dog").mkdir()
    with pytest.raises(ValueError, match=r"class folders but no \.jpg/\.jpeg/\.png files"):
        FolderSource.scan(tmp_path)


def test_class_folders_with_only_ignored_files_name_them(tmp_path: Path) -> None:
    (tmp_path / "dog").mkdir()
    (tmp_path / "dog/notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match=r"no \.jpg/\.jpeg/\.png files.*dog.notes\.txt"):
        FolderSource.scan(tmp_path)


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        FolderSource.scan(tmp_path / "nope")


# -- the label CSV ---------------------------------------------------------------------------
def _csv_root(tmp_path: Path, text: str, *, bom: bool = False) -> Path:
    _write(tmp_path / "images/a.jpg")
    _write(tmp_path / "images/b.png")
    (tmp_path / "labels.csv").write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
    return tmp_path


def test_csv_with_utf8_bom(tmp_path: Path) -> None:
    root = _csv_root(tmp_path, "path,labels\nimages/a.jpg,red\nimages/b.png,red blue\n", bom=True)
    src = open_source(root)
    assert isinstance(src, CsvSource) and src.multi_label
    assert src.paths == ("images/a.jpg", "images/b.png")
    assert src.classes == ("red", "blue")
    assert src.targets.tolist() == [[1.0, 0.0], [1.0, 1.0]]


def test_classes_txt_with_bom_and_crlf(tmp_path: Path) -> None:
    root = _csv_root(tmp_path, "path,labels\r\nimages/a.jpg,blue\r\nimages/b.png,\r\n")
    (root / "classes.txt").write_bytes(b"\xef\xbb\xbfred\r\nblue\r\n")
    src = CsvSource.load(root)
    assert src.classes == ("red", "blue")
    assert src.targets.tolist() == [[0.0, 1.0], [0.0, 0.0]]  # an empty labels field: negative


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("path,labels\nimages/a.jpg,red\nimages/b.png\n", r"row 3 has no 'labels' field"),
        ("path,labels\n\nimages/a.jpg,red\n\nimages/b.png\n", r"row 5 has no 'labels' field"),
        ("labels,path\nred,images/a.jpg\nred\n", r"row 3 has no 'path' field"),
        ("path,labels\nimages/a.jpg,red\n,red\n", r"row 3 has an empty path"),
        ("path,labels\nimages/a.jpg,red\n  ,red\n", r"row 3 has an empty path"),
        ("path,labels\nimages/a.jpg,red,x\n", r"row 2 has more fields than the header"),
        ("path,labels\n\nimages/a.jpg,red purple\n", r"row 3 has label 'purple' not in"),
    ],
)
def test_csv_bad_rows_name_the_file_and_line(tmp_path: Path, text: str, match: str) -> None:
    root = _csv_root(tmp_path, text)
    if "purple" in text:
        (root / "classes.txt").write_text("red\n")
    with pytest.raises(ValueError, match="labels.csv: " + match) as info:
        CsvSource.load(root)
    assert "; " in str(info.value)  # the fix follows the problem


@pytest.mark.parametrize(
    "path",
    ["../outside.jpg", "images/../../outside.jpg", "..", "/etc/passwd", "images/../../../etc"],
)
def test_csv_paths_outside_the_root_are_rejected(tmp_path: Path, path: str) -> None:
    root = _csv_root(tmp_path / "data", f"path,labels\nimages/a.jpg,red\n{path},red\n")
    with pytest.raises(ValueError, match=r"labels.csv: row 3 has path .* outside the data folder"):
        CsvSource.load(root)


def test_csv_paths_inside_the_root_are_kept_as_written(tmp_path: Path) -> None:
    root = _csv_root(tmp_path, "path,labels\nimages/../images/a.jpg,red\n./images/b.png,red\n")
    src = CsvSource.load(root)
    assert src.paths == ("images/../images/a.jpg", "./images/b.png")
    assert src.read(0) == (root / "images/a.jpg").read_bytes()


def test_csv_header_errors(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text("file,tags\na.jpg,red\n")
    with pytest.raises(ValueError, match="needs the header 'path,labels'"):
        CsvSource.load(tmp_path)
    (tmp_path / "labels.csv").write_text("path,labels\n")
    with pytest.raises(ValueError, match="has no rows"):
        CsvSource.load(tmp_path)
    (tmp_path / "labels.csv").write_text("")
    with pytest.raises(ValueError, match="has no rows"):
        CsvSource.load(tmp_path)


# -- in-memory arrays ------------------------------------------------------------------------
def _arrays(n: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 20, 24, 3), dtype=np.uint8), np.arange(n) % 3


@pytest.mark.parametrize(
    "view",
    [
        lambda x: x[:, ::-1],
        lambda x: x[:, :, ::-1],
        lambda x: x[:, ::2],
        lambda x: x.transpose(0, 2, 1, 3),
        lambda x: x[::-1],
    ],
    ids=["flip-ud", "flip-lr", "stride-2", "transposed", "reversed-batch"],
)
@pytest.mark.parametrize("train", [True, False])
def test_array_source_non_contiguous_views(
    view: Callable[[np.ndarray], np.ndarray], train: bool
) -> None:
    images, labels = _arrays()
    x = view(images)
    assert not x.flags.c_contiguous
    src = ArraySource.from_arrays(x, labels)
    assert src.images.flags.c_contiguous and np.array_equal(src.images, x)
    (batch,) = list(Loader(src, batch_size=8, train=train, **CPU))
    assert batch.images.shape == (6, 3, SIZE, SIZE)
    assert torch.isfinite(batch.images).all()


def test_array_source_keeps_a_contiguous_array() -> None:
    images, labels = _arrays()
    assert ArraySource.from_arrays(images, labels).images is images


@pytest.mark.parametrize(
    ("labels", "error", "match"),
    [
        (np.array([0.0, 1.0, 2.0, 0.0, 1.0, 2.0]), TypeError, "integer class indices"),
        (np.array([True, False] * 3), TypeError, "integer class indices"),
        (np.array(["a", "b"] * 3), TypeError, "integer class indices"),
        (np.array([[["a"]]] * 6), ValueError, r"\[N\] class indices or \[N, C\] multi-hot"),
        (np.array(3), ValueError, r"\[N\] class indices or \[N, C\] multi-hot"),
        (np.array([0, 1, -1, 0, 1, 2]), ValueError, "negative class index -1"),
        (np.array([["a", "b"]] * 6), TypeError, "multi-hot labels must be numbers"),
        (torch.tensor([0.5] * 6), TypeError, "integer class indices"),
    ],
)
def test_array_source_bad_labels(labels: object, error: type[Exception], match: str) -> None:
    images, _ = _arrays()
    with pytest.raises(error, match=match):
        ArraySource.from_arrays(images, labels)  # type: ignore[arg-type]


def test_array_source_label_dtypes() -> None:
    images, _ = _arrays()
    src = ArraySource.from_arrays(images, np.array([0, 1, 2, 0, 1, 2], dtype=np.uint8))
    assert src.targets.dtype == torch.int64 and src.classes == ("0", "1", "2")
    hot = ArraySource.from_arrays(images, torch.eye(3, dtype=torch.bfloat16)[[0, 1, 2] * 2])
    assert hot.multi_label and hot.targets.dtype == torch.float32 and hot.classes == ("0", "1", "2")


def test_array_source_direct_construction_checks_targets() -> None:
    images, labels = _arrays()
    with pytest.raises(TypeError, match="targets must be a torch.Tensor"):
        ArraySource(images, labels, ("0", "1", "2"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"single-label targets must be int64 \[N\]"):
        ArraySource(images, torch.zeros(6), ("0",))
    with pytest.raises(ValueError, match=r"multi-label targets must be float32 \[N, C\]"):
        ArraySource(images, torch.zeros(6, dtype=torch.int64), ("0",), multi_label=True)
    with pytest.raises(ValueError, match="3 classes"):
        ArraySource(images, torch.tensor(labels), ("0", "1"))
    with pytest.raises(ValueError, match="6 images but 5 labels"):
        ArraySource.from_arrays(images, labels[:5])
