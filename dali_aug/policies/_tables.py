"""The AutoAugment policy tables (Cubuk et al., arXiv:1805.09501, Appendix A).

Each sub-policy is two (op, probability, level) triples; ``None`` means the op takes no
magnitude. Levels are on the 0-10 scale of the reference code and are applied with the
catalog's increasing mapping (as torchvision's ``AutoAugment`` does), so e.g. a Color level
of 0 is the identity rather than the original code's factor 0.1.
"""

from __future__ import annotations

Triple = tuple[str, float, "int | None"]
Table = tuple[tuple[Triple, Triple], ...]

IMAGENET: Table = (
    (("Posterize", 0.4, 8), ("Rotate", 0.6, 9)),
    (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
    (("Equalize", 0.8, None), ("Equalize", 0.6, None)),
    (("Posterize", 0.6, 7), ("Posterize", 0.6, 6)),
    (("Equalize", 0.4, None), ("Solarize", 0.2, 4)),
    (("Equalize", 0.4, None), ("Rotate", 0.8, 8)),
    (("Solarize", 0.6, 3), ("Equalize", 0.6, None)),
    (("Posterize", 0.8, 5), ("Equalize", 1.0, None)),
    (("Rotate", 0.2, 3), ("Solarize", 0.6, 8)),
    (("Equalize", 0.6, None), ("Posterize", 0.4, 6)),
    (("Rotate", 0.8, 8), ("Color", 0.4, 0)),
    (("Rotate", 0.4, 9), ("Equalize", 0.6, None)),
    (("Equalize", 0.0, None), ("Equalize", 0.8, None)),
    (("Invert", 0.6, None), ("Equalize", 1.0, None)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Rotate", 0.8, 8), ("Color", 1.0, 2)),
    (("Color", 0.8, 8), ("Solarize", 0.8, 7)),
    (("Sharpness", 0.4, 7), ("Invert", 0.6, None)),
    (("ShearX", 0.6, 5), ("Equalize", 1.0, None)),
    (("Color", 0.4, 0), ("Equalize", 0.6, None)),
    (("Equalize", 0.4, None), ("Solarize", 0.2, 4)),
    (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
    (("Invert", 0.6, None), ("Equalize", 1.0, None)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Equalize", 0.8, None), ("Equalize", 0.6, None)),
)

CIFAR10: Table = (
    (("Invert", 0.1, None), ("Contrast", 0.2, 6)),
    (("Rotate", 0.7, 2), ("TranslateX", 0.3, 9)),
    (("Sharpness", 0.8, 1), ("Sharpness", 0.9, 3)),
    (("ShearY", 0.5, 8), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.5, None), ("Equalize", 0.9, None)),
    (("ShearY", 0.2, 7), ("Posterize", 0.3, 7)),
    (("Color", 0.4, 3), ("Brightness", 0.6, 7)),
    (("Sharpness", 0.3, 9), ("Brightness", 0.7, 9)),
    (("Equalize", 0.6, None), ("Equalize", 0.5, None)),
    (("Contrast", 0.6, 7), ("Sharpness", 0.6, 5)),
    (("Color", 0.7, 7), ("TranslateX", 0.5, 8)),
    (("Equalize", 0.3, None), ("AutoContrast", 0.4, None)),
    (("TranslateY", 0.4, 3), ("Sharpness", 0.2, 6)),
    (("Brightness", 0.9, 6), ("Color", 0.2, 8)),
    (("Solarize", 0.5, 2), ("Invert", 0.0, None)),
    (("Equalize", 0.2, None), ("AutoContrast", 0.6, None)),
    (("Equalize", 0.2, None), ("Equalize", 0.6, None)),
    (("Color", 0.9, 9), ("Equalize", 0.6, None)),
    (("AutoContrast", 0.8, None), ("Solarize", 0.2, 8)),
    (("Brightness", 0.1, 3), ("Color", 0.7, 0)),
    (("Solarize", 0.4, 5), ("AutoContrast", 0.9, None)),
    (("TranslateY", 0.9, 9), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.9, None), ("Solarize", 0.8, 3)),
    (("Equalize", 0.8, None), ("Invert", 0.1, None)),
    (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, None)),
)

SVHN: Table = (
    (("ShearX", 0.9, 4), ("Invert", 0.2, None)),
    (("ShearY", 0.9, 8), ("Invert", 0.7, None)),
    (("Equalize", 0.6, None), ("Solarize", 0.6, 6)),
    (("Invert", 0.9, None), ("Equalize", 0.6, None)),
    (("Equalize", 0.6, None), ("Rotate", 0.9, 3)),
    (("ShearX", 0.9, 4), ("AutoContrast", 0.8, None)),
    (("ShearY", 0.9, 8), ("Invert", 0.4, None)),
    (("ShearY", 0.9, 5), ("Solarize", 0.2, 6)),
    (("Invert", 0.9, None), ("AutoContrast", 0.8, None)),
    (("Equalize", 0.6, None), ("Rotate", 0.9, 3)),
    (("ShearX", 0.9, 4), ("Solarize", 0.3, 3)),
    (("ShearY", 0.8, 8), ("Invert", 0.7, None)),
    (("Equalize", 0.9, None), ("TranslateY", 0.6, 6)),
    (("Invert", 0.9, None), ("Equalize", 0.6, None)),
    (("Contrast", 0.3, 3), ("Rotate", 0.8, 4)),
    (("Invert", 0.8, None), ("TranslateY", 0.0, 2)),
    (("ShearY", 0.7, 6), ("Solarize", 0.4, 8)),
    (("Invert", 0.6, None), ("Rotate", 0.8, 4)),
    (("ShearY", 0.3, 7), ("TranslateX", 0.9, 3)),
    (("ShearX", 0.1, 6), ("Invert", 0.6, None)),
    (("Solarize", 0.7, 2), ("TranslateY", 0.6, 7)),
    (("ShearY", 0.8, 4), ("Invert", 0.8, None)),
    (("ShearX", 0.7, 9), ("TranslateY", 0.8, 3)),
    (("ShearY", 0.8, 5), ("AutoContrast", 0.7, None)),
    (("ShearX", 0.7, 2), ("Invert", 0.1, None)),
)

TABLES: dict[str, Table] = {"imagenet": IMAGENET, "cifar10": CIFAR10, "svhn": SVHN}

#: The op set of RandAugment and TrivialAugment (arXiv:1909.13719, torchvision's choice).
RAND_OPS: tuple[str, ...] = (
    "Identity",
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
    "Rotate",
    "Brightness",
    "Color",
    "Contrast",
    "Sharpness",
    "Posterize",
    "Solarize",
    "AutoContrast",
    "Equalize",
)

#: TrivialAugmentWide's wider ranges (arXiv:2103.10158, Table 1) as the largest level on the
#: catalog's scale: shear 0.99, translate 32 px at 224 (0.143 of the size), rotate 135 deg,
#: enhancement 1 +- 0.99, posterize down to 2 bits, solarize down to 0.
WIDE_MAX_LEVEL: dict[str, float] = {
    "ShearX": 33.0,
    "ShearY": 33.0,
    "TranslateX": 3.175,
    "TranslateY": 3.175,
    "Rotate": 45.0,
    "Brightness": 11.0,
    "Color": 11.0,
    "Contrast": 11.0,
    "Sharpness": 11.0,
    "Posterize": 15.0,
    "Solarize": 10.0,
}

#: timm's RandAugment op sets (``timm/data/auto_augment.py``: ``_RAND_TRANSFORMS`` and
#: ``_RAND_INCREASING_TRANSFORMS``, timm 1.0), as ``(timm name, catalog op)`` pairs in timm's
#: order. The catalog op applies timm's level map (``LEVEL_TO_ARG``) exactly: timm's default
#: Posterize/Solarize/enhance maps are the catalog's ``*Timm`` ops, its ``*Increasing`` enhance
#: and Solarize maps are the catalog's own increasing ops (``SolarizeIncreasing``'s threshold
#: ``256 - int(25.6 l)`` inverts the same integer pixels as ``256 - 25.6 l``), its
#: ``TranslateXRel``/``TranslateYRel`` (``0.45 * l/10`` of the size) are TranslateX/TranslateY.
TIMM_RAND_TRANSFORMS: tuple[tuple[str, str], ...] = (
    ("AutoContrast", "AutoContrast"),
    ("Equalize", "Equalize"),
    ("Invert", "Invert"),
    ("Rotate", "Rotate"),
    ("Posterize", "PosterizeTimm"),
    ("Solarize", "SolarizeTimm"),
    ("SolarizeAdd", "SolarizeAdd"),
    ("Color", "ColorTimm"),
    ("Contrast", "ContrastTimm"),
    ("Brightness", "BrightnessTimm"),
    ("Sharpness", "SharpnessTimm"),
    ("ShearX", "ShearX"),
    ("ShearY", "ShearY"),
    ("TranslateXRel", "TranslateX"),
    ("TranslateYRel", "TranslateY"),
)
TIMM_RAND_INCREASING_TRANSFORMS: tuple[tuple[str, str], ...] = (
    ("AutoContrast", "AutoContrast"),
    ("Equalize", "Equalize"),
    ("Invert", "Invert"),
    ("Rotate", "Rotate"),
    ("PosterizeIncreasing", "PosterizeIncreasing"),
    ("SolarizeIncreasing", "Solarize"),
    ("SolarizeAdd", "SolarizeAdd"),
    ("ColorIncreasing", "Color"),
    ("ContrastIncreasing", "Contrast"),
    ("BrightnessIncreasing", "Brightness"),
    ("SharpnessIncreasing", "Sharpness"),
    ("ShearX", "ShearX"),
    ("ShearY", "ShearY"),
    ("TranslateXRel", "TranslateX"),
    ("TranslateYRel", "TranslateY"),
)
#: timm's ``mstd`` above this value means a uniform magnitude in [0, m] (``mstd > 100``).
TIMM_UNIFORM_MSTD = 100.0
