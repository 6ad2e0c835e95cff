"""Child process of ``interpolation.morphological_many``: ITK's contour interpolation, without torch.

    python -m slicepick.allocation.itk_worker REQUEST.npz RESULT.npz
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from slicepick.allocation.interpolation import _morphological_here


def main(request: str, result: str) -> None:
    outs = {}
    with np.load(request) as data:
        for i in range(int(data["n"])):
            labels = np.zeros(tuple(data[f"shape{i}"]), np.uint8)
            labels[data[f"positions{i}"]] = data[f"annotated{i}"]
            outs[f"out{i}"] = _morphological_here(labels, data[f"positions{i}"], data[f"spacing{i}"])
    tmp = Path(result).with_name("partial.npz")
    np.savez_compressed(tmp, **outs)
    tmp.replace(result)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # the result is in place; skip ITK's interpreter teardown
