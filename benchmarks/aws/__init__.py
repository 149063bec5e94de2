"""The lab: benchmarks, mechanism checks and their records (not part of the dali_aug package)."""
