"""CUDA kernels of dali_aug (installed as ``dali_aug.kernels``) and their torch references."""
