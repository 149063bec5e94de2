"""Multi-label demo clips of moving objects, drawn from a seed (no download), for the clip
models (:func:`dali_aug.models.build_model`'s ``clip-*`` names). Everything here (sizes,
speeds, rates) is our choice.

A clip is ``length`` frames (default 16) of ``size`` x ``size`` RGB (default 32) holding one or
two objects (two with probability :data:`TWO_OBJECTS_RATE`) on a dark background of one
colour, plain or with static Gaussian noise (std :data:`NOISE_STD`, half of the clips). An
object is a shape (``kind="shapes"``: a square, a disc or a triangle, each with a dark "hand"
from its centre to its top, so that turning shows) or a Fashion-MNIST item
(``kind="fashion"``, read from the IDX files as :func:`load_fashion_mnist`; its group of
:data:`~dali_aug.datasets._fashion_multi.GROUPS` is its kind), in a bright random colour.
Each object does one of the :data:`MOTIONS` over the clip (or, with probability
:data:`STILL_RATE`, stays still), linearly in the frame index ``t``, ``u = t / (length - 1)``:

=============================  =================================================================
label                          what the object does
=============================  =================================================================
moves left / right / up / down its centre moves by :data:`SHIFT` x ``size`` in that direction
rotates clockwise / counter-   it turns by :data:`TURN` degrees (clockwise as seen on screen,
clockwise                      y pointing down)
grows                          its side grows by the factor :data:`GROWTH` (area x 4)
flickers                       its brightness oscillates with period :data:`FLICKER_PERIOD`
                               frames between :data:`FLICKER_LOW` and 1
``<kind> present``             an object of that kind is in the clip
=============================  =================================================================

A clip's labels are its objects' kinds and motions: 1 to 4 labels. The objects start where
they stay inside the frame for the whole clip. Objects may overlap (the second is drawn on
top). The object-to-frame maps are affine, sampled bilinearly (``torch.nn.functional.
grid_sample``) for all objects and frames at once.

Which catalog ops change which labels' truth (:data:`DESTROYED_BY`), assuming one op with one
draw of its parameters is applied to every frame of a clip:

* FlipLR mirrors every frame: left and right motion swap, and so do clockwise and
  counterclockwise turning; a flipped clip keeps its old, now wrong, labels. The shapes are
  symmetric about their vertical axis (the hand included), so a flipped shapes clip equals,
  up to rounding, the clip drawn from the mirrored start (tested). FlipUD swaps up and down,
  and clockwise and counterclockwise.
* TranslateX/Y (up to 45 % of the side at level 10), ShearX/Y (objects near an edge go out),
  Cutout (a gray square over an object) and SamplePairing (another clip's objects blended in)
  and PosterizeIncreasing/Timm (0 bits: black) can hide an object or show one that is not
  labelled: they can change every label. Rotate (30 degrees at level 10) keeps the objects in
  the frame's middle and turns a motion by at most 30 degrees: ``moves left`` still moves
  mostly left, but gains an up or down component of up to half its speed, so we list it for
  the four direction labels.
* Equalize maps each frame on its own (an object is stretched to the top of whatever frame
  it is in), and Solarize, SolarizeTimm and SolarizeAdd fold values at a threshold, which can
  cancel an oscillation that crosses it: measured on the flickering clips at levels 3-10, each
  takes the oscillation of a clip's mean brightness below 30 % of its size for some clips, so
  they can hide ``flickers``. AutoContrast, which also maps each frame on its own, stretches
  the oscillation instead; it and every other colour op (Color, Contrast, Brightness,
  Sharpness, Invert, Posterize) keep more than 35 % of it (tested) and every label; no colour
  op moves a pixel, so none touches the other motion labels.

The same arguments give the same arrays: all draws come from ``numpy.random.
default_rng([seed, n, length, size, kind code])``. :func:`moving_clips` caches its arrays in
the data cache (:func:`~dali_aug.datasets.cache_dir`), one ``.npz`` file per arguments.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import torch
from torch.nn import functional as F

from dali_aug.datasets._fashion_multi import GROUPS

__all__ = [
    "DESTROYED_BY",
    "FLICKER_LOW",
    "FLICKER_PERIOD",
    "GROWTH",
    "MOTIONS",
    "MOVING_DATA",
    "NOISE_STD",
    "SHAPE_KINDS",
    "SHIFT",
    "STILL_RATE",
    "TURN",
    "TWO_OBJECTS_RATE",
    "ClipKind",
    "moving_classes",
    "moving_clips",
]

ClipKind = Literal["shapes", "fashion"]
_KINDS: tuple[str, ...] = get_args(ClipKind)
#: the ``--data`` names of the clips and their object kinds
MOVING_DATA: dict[str, ClipKind] = {"moving-shapes": "shapes", "moving-fashion": "fashion"}
#: The motion labels, in target order (the first of each clip's labels).
MOTIONS: tuple[str, ...] = (
    "moves left",
    "moves right",
    "moves up",
    "moves down",
    "rotates clockwise",
    "rotates counterclockwise",
    "grows",
    "flickers",
)
_LEFT, _RIGHT, _UP, _DOWN, _CW, _CCW, _GROWS, _FLICKERS = range(len(MOTIONS))
_STILL = -1
#: The shapes of ``kind="shapes"``.
SHAPE_KINDS: tuple[str, ...] = ("square", "disc", "triangle")
#: A clip holds two objects with this probability, else one; an object stays still with
#: this one, else does a uniformly drawn motion.
TWO_OBJECTS_RATE = 0.5
STILL_RATE = 0.2
#: Translation over a clip (a share of the side), turn (degrees), growth (last side over
#: first), flicker period (frames) and lowest brightness.
SHIFT = 0.4
TURN = 180.0
GROWTH = 2.0
FLICKER_PERIOD = 4
FLICKER_LOW = 0.2
#: Standard deviation of the noisy backgrounds' static noise (0-255).
NOISE_STD = 12.0
_HALF = 0.15  # an object's half side at scale 1, a share of the side
_SPRITE = 32  # the drawn shapes' resolution
_HAND = 0.35  # the hand's brightness, a share of the object's
_FORMAT = 1  # the cache files' version: bump it when the drawing changes

_REMOVE: tuple[str, ...] = ("TranslateX", "TranslateY", "ShearX", "ShearY", "Cutout")
_REMOVE += ("SamplePairing", "PosterizeIncreasing", "PosterizeTimm")
_LR = ("FlipLR", "Rotate", *_REMOVE)
_UD = ("FlipUD", "Rotate", *_REMOVE)
_TURNS = ("FlipLR", "FlipUD", *_REMOVE)
_FOLD = ("Equalize", "Solarize", "SolarizeTimm", "SolarizeAdd")
#: The catalog ops that can change each label's truth at levels 0-10 (module docstring);
#: every other op keeps it. The ``<kind> present`` labels of both kinds are listed.
DESTROYED_BY: dict[str, tuple[str, ...]] = {
    "moves left": _LR,
    "moves right": _LR,
    "moves up": _UD,
    "moves down": _UD,
    "rotates clockwise": _TURNS,
    "rotates counterclockwise": _TURNS,
    "grows": _REMOVE,
    "flickers": (*_FOLD, *_REMOVE),
    **{f"{name} present": _REMOVE for name in (*SHAPE_KINDS, *GROUPS)},
}


def _kind_names(kind: str) -> tuple[str, ...]:
    return SHAPE_KINDS if kind == "shapes" else tuple(GROUPS)


def moving_classes(kind: ClipKind = "shapes") -> tuple[str, ...]:
    """The label names of :func:`moving_clips` in target order: :data:`MOTIONS`, then
    ``"<kind> present"`` per object kind (shapes: square, disc, triangle; fashion: the groups
    top, trouser, dress, footwear, bag)."""
    _check_kind(kind)
    return (*MOTIONS, *(f"{name} present" for name in _kind_names(kind)))


@dataclasses.dataclass(frozen=True)
class _Layout:
    """What a set of clips shows, per clip [N] and object [N, 2] (continuous pixel
    coordinates: pixel ``i`` spans ``[i, i + 1]``, y pointing down)."""

    size: int
    length: int
    present: np.ndarray  # bool [N, 2]
    kind: np.ndarray  # int [N, 2]: an index into the kind names
    motion: np.ndarray  # int [N, 2]: an index into MOTIONS, -1 still
    x0: np.ndarray  # float [N, 2]: the centre at frame 0
    y0: np.ndarray
    angle0: np.ndarray  # float [N, 2], degrees, clockwise on screen
    phase: np.ndarray  # float [N, 2]: the flicker's phase (radians)
    colour: np.ndarray  # float [N, 2, 3] (0-255)
    background: np.ndarray  # float [N, size, size, 3] (0-255)

    def mirrored(self) -> _Layout:
        """The layout whose clips are this one's flipped left-right (FlipLR of every frame),
        labels swapped accordingly."""
        swap = np.arange(len(MOTIONS))
        swap[[_LEFT, _RIGHT, _CW, _CCW]] = [_RIGHT, _LEFT, _CCW, _CW]
        motion = np.where(self.motion >= 0, swap[self.motion], self.motion)
        return dataclasses.replace(
            self,
            motion=motion,
            x0=self.size - self.x0,
            angle0=-self.angle0,
            background=self.background[:, :, ::-1].copy(),
        )


def _check_kind(kind: object) -> None:
    if kind not in _KINDS:
        raise ValueError(f"moving_clips: kind={kind!r}; use one of {', '.join(map(repr, _KINDS))}")


#: the smallest value of each int argument, and why when it is not obvious
_LOWEST: dict[str, tuple[int, str]] = {
    "n": (1, ""),
    "length": (2 * FLICKER_PERIOD, " (a flicker shows two periods)"),
    "size": (16, " (smaller hides the shapes)"),
    "seed": (0, ""),
}


def _check(kind: object, **ints: object) -> None:
    for name, value in ints.items():
        low, why = _LOWEST[name]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"moving_clips: {name}={value!r}; pass an int >= {low}")
        if value < low:
            raise ValueError(f"moving_clips: {name}={value}; pass {name} >= {low}{why}")
    _check_kind(kind)


def _layout(rng: np.random.Generator, n: int, length: int, size: int, kinds: int) -> _Layout:
    present = np.ones((n, 2), bool)
    present[:, 1] = rng.random(n) < TWO_OBJECTS_RATE
    kind = rng.integers(0, kinds, (n, 2))
    motion = np.where(rng.random((n, 2)) < STILL_RATE, _STILL, rng.integers(0, 8, (n, 2)))
    half = _HALF * size * np.where(motion == _GROWS, GROWTH, 1.0)
    margin = np.sqrt(2) * half  # a square's corner, at any angle
    shift = SHIFT * size
    coords = []
    for low_shift, high_shift in ((_LEFT, _RIGHT), (_UP, _DOWN)):
        low = margin + shift * (motion == low_shift)
        high = size - margin - shift * (motion == high_shift)
        coords.append(low + (high - low) * rng.random((n, 2)))
    colour = rng.uniform(140.0, 255.0, (n, 2, 3))
    background = rng.uniform(0.0, 80.0, (n, 1, 1, 3)) + np.zeros((1, size, size, 3))
    noisy = rng.random(n) < 0.5
    background[noisy] += rng.normal(0.0, NOISE_STD, (int(noisy.sum()), size, size, 3))
    return _Layout(
        size=size,
        length=length,
        present=present,
        kind=kind,
        motion=motion,
        x0=coords[0],
        y0=coords[1],
        angle0=rng.uniform(-180.0, 180.0, (n, 2)),
        phase=rng.uniform(0.0, 2 * np.pi, (n, 2)),
        colour=colour,
        background=np.clip(background, 0.0, 255.0),
    )


def _shape_sprites() -> np.ndarray:
    """float32 [3, S, S] in [0, 1]: square, disc, triangle (apex up), each with a hand from
    its centre up at :data:`_HAND`; every sprite is symmetric about its vertical axis."""
    c = (np.arange(_SPRITE) + 0.5) / _SPRITE * 2 - 1  # pixel centres in [-1, 1]
    y, x = np.meshgrid(c, c, indexing="ij")
    square = (np.abs(x) < 0.75) & (np.abs(y) < 0.75)
    disc = x**2 + y**2 < 0.85**2
    triangle = (y > -0.8) & (y < 0.65) & (np.abs(x) < (y + 0.8) * 0.6)
    hand = (np.abs(x) < 0.15) & (y < 0) & (y > -0.6)
    sprites = np.stack([square, disc, triangle]).astype(np.float32)
    return np.where(hand & (sprites > 0), np.float32(_HAND), sprites)


def _fashion_sprites(
    rng: np.random.Generator, kind: np.ndarray, root: str | Path | None
) -> np.ndarray:
    """float32 [N, 2, 28, 28] in [0, 1]: a random training item of each object's group."""
    from dali_aug.datasets._fashion_mnist import load_fashion_mnist

    images, labels = load_fashion_mnist("train", root)
    items = np.zeros(kind.shape, np.int64)
    for g, classes in enumerate(GROUPS.values()):
        members = np.flatnonzero(np.isin(labels, classes))
        where = kind == g
        if not len(members):
            raise ValueError(f"moving_clips: the IDX files hold no item of classes {classes}")
        items[where] = members[rng.integers(0, len(members), int(where.sum()))]
    return images[items].astype(np.float32) / 255.0


def _frames(layout: _Layout) -> tuple[torch.Tensor, ...]:
    """Per object and frame [N, 2, T]: centre x, y (pixels), angle (radians), half side
    (pixels) and brightness."""
    u = torch.linspace(0.0, 1.0, layout.length, dtype=torch.float64)
    t = torch.arange(layout.length, dtype=torch.float64)
    motion = torch.from_numpy(layout.motion)[..., None]

    def is_(m: int) -> torch.Tensor:
        return (motion == m).double()

    shift = SHIFT * layout.size * u
    x = torch.from_numpy(layout.x0)[..., None] + (is_(_RIGHT) - is_(_LEFT)) * shift
    y = torch.from_numpy(layout.y0)[..., None] + (is_(_DOWN) - is_(_UP)) * shift
    turn = (is_(_CW) - is_(_CCW)) * TURN * u
    angle = torch.deg2rad(torch.from_numpy(layout.angle0)[..., None] + turn)
    half = _HALF * layout.size * (1.0 + is_(_GROWS) * (GROWTH - 1.0) * u)
    wave = torch.cos(2 * np.pi * t / FLICKER_PERIOD + torch.from_numpy(layout.phase)[..., None])
    flicker = FLICKER_LOW + (1 - FLICKER_LOW) * (0.5 + 0.5 * wave)
    bright = torch.where(motion == _FLICKERS, flicker, torch.ones_like(flicker))
    return x, y, angle, half, bright


def _render(layout: _Layout, sprites: np.ndarray, chunk: int = 256) -> np.ndarray:
    """uint8 [N, T, H, W, 3] of a layout; ``sprites`` float [K, S, S] (indexed by the
    layout's kinds) or [N, 2, S, S] (one per object)."""
    n, size, length = len(layout.present), layout.size, layout.length
    x, y, angle, half, bright = _frames(layout)
    # canvas -> sprite in grid_sample's normalised coordinates: q = R(-angle) (p - c) / s
    cx, cy, s = x / size * 2 - 1, y / size * 2 - 1, half / size * 2
    cos, sin = torch.cos(angle) / s, torch.sin(angle) / s
    theta = torch.stack(
        [
            torch.stack([cos, sin, -(cos * cx + sin * cy)], -1),
            torch.stack([-sin, cos, -(-sin * cx + cos * cy)], -1),
        ],
        -2,
    ).float()  # [N, 2, T, 2, 3]
    per_object = sprites.ndim == 4
    table = torch.from_numpy(np.ascontiguousarray(sprites, np.float32))
    out = np.empty((n, length, size, size, 3), np.uint8)
    for lo in range(0, n, chunk):  # bounds the memory, not a per-sample loop
        hi = min(n, lo + chunk)
        frame = torch.from_numpy(layout.background[lo:hi]).float()[:, None]
        frame = frame.expand(-1, length, -1, -1, -1)
        for k in range(2):
            g = table[lo:hi, k] if per_object else table[torch.from_numpy(layout.kind[lo:hi, k])]
            m = hi - lo
            inp = (
                g[:, None, None].expand(-1, length, 1, -1, -1).reshape(m * length, 1, *g.shape[1:])
            )
            grid = F.affine_grid(
                theta[lo:hi, k].reshape(m * length, 2, 3),
                [m * length, 1, size, size],
                align_corners=False,
            )
            value = F.grid_sample(inp, grid, mode="bilinear", align_corners=False)
            value = value.reshape(m, length, size, size, 1)
            alpha = (4 * value).clamp(max=1.0) * torch.from_numpy(layout.present[lo:hi, k])[
                :, None, None, None, None
            ].float()
            colour = torch.from_numpy(layout.colour[lo:hi, k]).float()[:, None, None, None]
            light = bright[lo:hi, k].float()[:, :, None, None, None]
            frame = frame * (1 - alpha) + alpha * value * colour * light
        out[lo:hi] = frame.round().clamp(0, 255).to(torch.uint8).numpy()
    return out


def _targets(layout: _Layout, kinds: int) -> np.ndarray:
    """float32 [N, len(MOTIONS) + kinds] multi-hot."""
    n = len(layout.present)
    targets = np.zeros((n, len(MOTIONS) + kinds), np.float32)
    rows = np.repeat(np.arange(n)[:, None], 2, axis=1)
    moving = layout.present & (layout.motion >= 0)
    targets[rows[moving], layout.motion[moving]] = 1
    targets[rows[layout.present], len(MOTIONS) + layout.kind[layout.present]] = 1
    return targets


def _generate(
    n: int, length: int, size: int, seed: int, kind: str, root: str | Path | None
) -> tuple[np.ndarray, np.ndarray, _Layout]:
    kinds = len(_kind_names(kind))
    rng = np.random.default_rng([seed, n, length, size, _KINDS.index(kind)])
    layout = _layout(rng, n, length, size, kinds)
    sprites = _shape_sprites() if kind == "shapes" else _fashion_sprites(rng, layout.kind, root)
    return _render(layout, sprites), _targets(layout, kinds), layout


def _cache_file(
    folder: Path, n: int, length: int, size: int, seed: int, kind: str, root: str | Path | None
) -> Path:
    name = f"moving-{kind}-n{n}-t{length}-s{size}-seed{seed}-v{_FORMAT}"
    if kind == "fashion":
        from dali_aug.datasets._fashion_mnist import fashion_mnist_dir

        where = str(fashion_mnist_dir(root).resolve())
        name += "-" + hashlib.sha256(where.encode()).hexdigest()[:10]
    return folder / f"{name}.npz"


def moving_clips(
    n: int,
    *,
    length: int = 16,
    size: int = 32,
    seed: int = 0,
    kind: ClipKind = "shapes",
    cache_dir: str | Path | None = None,
    cache: bool = True,
    root: str | Path | None = None,
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Multi-label clips of moving objects (module docstring), generated once and cached.

    Args:
        n: the number of clips.
        length: frames per clip (>= 8: a flicker shows two periods).
        size: the frames' side in pixels (>= 16).
        seed: the seed of every draw; the same arguments give the same arrays.
        kind: ``"shapes"`` (drawn squares, discs, triangles; needs nothing) or ``"fashion"``
            (Fashion-MNIST items from its IDX files, ``apt-get install dataset-fashion-mnist``).
        cache_dir: the folder of the cached ``.npz`` files; None: ``cache_dir() /
            "moving-clips"`` (:func:`~dali_aug.datasets.cache_dir`).
        cache: False: generate without reading or writing the cache.
        root: the folder of the IDX files for ``kind="fashion"`` (as
            :func:`load_fashion_mnist`).

    Returns:
        ``(clips, targets, classes)``: uint8 [n, length, size, size, 3], float32 multi-hot
        [n, C] and the C label names (:func:`moving_classes`).

    Raises:
        TypeError: ``n``, ``length``, ``size`` or ``seed`` not an int.
        ValueError: one of them out of range, an unknown ``kind`` (naming the choices), or
            the IDX files missing for ``kind="fashion"``.

    Example:
        >>> clips, targets, classes = moving_clips(400, length=8, cache=False)
        >>> clips.shape, targets.shape
        ((400, 8, 32, 32, 3), (400, 11))
    """
    _check(kind, n=n, length=length, size=size, seed=seed)
    n, length, size, seed = int(n), int(length), int(size), int(seed)
    classes = moving_classes(kind)
    if not cache:
        clips, targets, _ = _generate(n, length, size, seed, kind, root)
        return clips, targets, classes
    from dali_aug.datasets._folders import cache_dir as default_cache

    folder = Path(cache_dir) if cache_dir is not None else default_cache() / "moving-clips"
    path = _cache_file(folder, n, length, size, seed, kind, root)
    if path.is_file():
        try:
            with np.load(path) as data:
                return data["clips"], data["targets"], classes
        except (OSError, ValueError, KeyError):
            pass  # a damaged file: generate it again
    clips, targets, _ = _generate(n, length, size, seed, kind, root)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    with tmp.open("wb") as fh:
        np.savez(fh, clips=clips, targets=targets)
    os.replace(tmp, path)  # atomic: a reader never sees half a file
    return clips, targets, classes
