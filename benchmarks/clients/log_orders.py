"""Runs a Python program (``log_orders.py PROGRAM ARGS...``) unchanged, appending the dataset
indices of every training batch the Loader yields to the JSON-lines file ``$ORDER_LOG``
(one line per batch: rank, epoch, indices). What the program does is not changed."""

from __future__ import annotations

import json
import os
import runpy
import sys
from typing import Any

import dali_aug.loader as loader_module

_batch = loader_module.Loader._batch


def _logged(self: Any, outs: Any, planned: Any, idx: Any, epoch: int) -> Any:
    batch = _batch(self, outs, planned, idx, epoch)
    if self.config.train:
        row = {"rank": int(os.environ.get("RANK", 0)), "epoch": epoch,
               "indices": batch.indices.tolist()}  # fmt: skip
        with open(os.environ["ORDER_LOG"], "a") as fh:
            fh.write(json.dumps(row) + "\n")
    return batch


if __name__ == "__main__":
    loader_module.Loader._batch = _logged  # type: ignore[method-assign,assignment]
    program = sys.argv[1]
    sys.argv = sys.argv[1:]
    sys.path.insert(0, os.path.dirname(os.path.abspath(program)))
    runpy.run_path(program, run_name="__main__")
