"""PIL reference implementations of the catalog ops (the AutoAugment reference semantics),
one image at a time: the golden reference of the tests (``tests/test_ops_pil.py``).
Independent of the backends' kernels: only ``dali_aug.ops.param`` (the documented level ->
parameter mapping) and the fill value ``FILL`` are shared.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from dali_aug.ops._api import param
from dali_aug.ops._catalog import FILL

_FILL = (FILL, FILL, FILL)


def _affine(img: Image.Image, data: tuple[float, ...]) -> Image.Image:
    return img.transform(
        img.size, Image.Transform.AFFINE, data, Image.Resampling.NEAREST, fillcolor=_FILL
    )


def pil_apply(
    name: str,
    image: np.ndarray,
    level: float,
    *,
    box: tuple[int, int, int, int] | None = None,
    partner: np.ndarray | None = None,
) -> np.ndarray:
    """Applies op ``name`` at ``level`` to one uint8 HWC image with PIL."""
    img = Image.fromarray(image)
    h, w = image.shape[:2]
    p = param(name, level)
    if name == "ShearX":
        out = _affine(img, (1, p, 0, 0, 1, 0))
    elif name == "ShearY":
        out = _affine(img, (1, 0, 0, p, 1, 0))
    elif name == "TranslateX":
        out = _affine(img, (1, 0, p * w, 0, 1, 0))
    elif name == "TranslateY":
        out = _affine(img, (1, 0, 0, 0, 1, p * h))
    elif name == "Rotate":
        out = img.rotate(p, resample=Image.Resampling.NEAREST, fillcolor=_FILL)
    elif name == "AutoContrast":
        out = ImageOps.autocontrast(img)
    elif name == "Invert":
        out = ImageOps.invert(img)
    elif name == "Equalize":
        out = ImageOps.equalize(img)
    elif name == "Solarize":
        out = ImageOps.solarize(img, p)  # type: ignore[arg-type]  # float thresholds work
    elif name in ("Posterize", "PosterizeIncreasing", "PosterizeTimm"):
        # 0 bits (timm's maps reach it) is the all-zero mask; Pillow >= 10.4 refuses bits=0
        out = ImageOps.posterize(img, int(p)) if p >= 1 else img.point([0] * 768)
    elif name == "SolarizeTimm":
        out = ImageOps.solarize(img, int(p))
    elif name == "SolarizeAdd":  # timm's solarize_add (thresh 128)
        lut = [min(255, i + int(p)) if i < 128 else i for i in range(256)]
        out = img.point(lut * 3)
    elif name in ("Contrast", "ContrastTimm"):
        out = ImageEnhance.Contrast(img).enhance(p)
    elif name in ("Color", "ColorTimm"):
        out = ImageEnhance.Color(img).enhance(p)
    elif name in ("Brightness", "BrightnessTimm"):
        out = ImageEnhance.Brightness(img).enhance(p)
    elif name in ("Sharpness", "SharpnessTimm"):
        out = ImageEnhance.Sharpness(img).enhance(p)
    elif name == "Cutout":
        assert box is not None
        arr = image.copy()
        y0, x0, y1, x1 = box
        arr[y0:y1, x0:x1] = FILL
        return arr
    elif name == "SamplePairing":
        assert partner is not None
        out = Image.blend(img, Image.fromarray(partner), p)
    elif name == "Identity":
        out = img
    elif name == "FlipLR":
        out = ImageOps.mirror(img)
    elif name == "FlipUD":
        out = ImageOps.flip(img)
    else:
        raise KeyError(name)
    return np.asarray(out)
