"""Packaging of dali_aug. Install torch first (``pip install torch==2.13.0``, the CPU wheel),
then ``pip install -e ".[test]"``: see README.md."""

from __future__ import annotations

from setuptools import find_packages, setup

setup(
    name="dali-aug",
    version="0.1.0",
    description="A GPU data pipeline (NVIDIA DALI + torch) with learned data augmentation",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=[
        *find_packages(include=["dali_aug", "dali_aug.*"]),
        "dali_aug.kernels",
    ],
    package_dir={"dali_aug.kernels": "kernels"},
    package_data={"dali_aug.kernels": ["*.cu"]},
    install_requires=[
        "torch>=2.4",
        "nvidia-dali-cuda130==2.4.0",
        "kornia>=0.9,<0.10",
        "numpy>=1.24",
        "pillow>=10",
        "pyyaml>=6",
        "tqdm>=4.60",
    ],
    extras_require={
        "gpu": ["cupy-cuda13x>=13"],
        "test": ["pytest>=8", "scipy>=1.10", "scikit-learn>=1.3", "ruff>=0.6", "mypy>=1.10"],
    },
    entry_points={"console_scripts": ["dali-aug=dali_aug.cli:main"]},
)
