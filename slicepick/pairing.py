"""The shared round 0: one model per seed, copied into the folder of each method that shares it.

Imports neither torch nor MONAI: the copy runs inside the Snakemake process (no job start-up).
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pandas as pd

from slicepick.files import replace_atomically, write_csv

log = logging.getLogger(__name__)

# The files of one round's folder, by the keys the rules and ``copy_shared_start`` name them with.
ROUND_FILES = {"selection": "selection.csv", "model": "model.pt", "log_csv": "train_log.csv",
               "metrics": "metrics.csv"}


def copy_shared_start(src: dict, dst: dict, method: str, log_path=None) -> None:
    """Copy the shared start's ``selection``, ``model``, ``log_csv`` and ``metrics`` files (keys of
    ``src`` and ``dst``) into a method's round-0 folder; its metrics rows then name the method."""
    for key in ("selection", "model", "log_csv"):
        replace_atomically(dst[key], lambda tmp, key=key: shutil.copyfile(src[key], tmp))
    write_csv(pd.read_csv(src["metrics"]).assign(method=method), dst["metrics"])
    if log_path:
        Path(log_path).write_text(f"{method}: round 0 is the shared start {Path(src['model']).parent}\n")
