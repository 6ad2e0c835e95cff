"""Outputs written whole or not at all: a sibling temporary file renamed over the target.

Imports neither torch nor MONAI, so table and copy jobs can use it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pandas as pd


def replace_atomically(path, write: Callable[[Path], object]) -> None:
    """``write(tmp)`` into ``<path>.tmp``, then rename it over ``path``: a reader (or a rerun after a
    killed job) never sees half a file."""
    tmp = Path(str(path) + ".tmp")
    write(tmp)
    tmp.replace(path)


def write_csv(frame: pd.DataFrame, path) -> None:
    """``frame`` as CSV without its index, atomically."""
    replace_atomically(path, lambda tmp: frame.to_csv(tmp, index=False))
