"""The prepared slice store, read-only (format: :mod:`slicepick.data.prepare`).

Imports neither torch nor MONAI, so table and figure jobs that read the store start fast.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd


class SliceStore:
    """Read-only view of a prepared dataset (memory-mapped)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.meta = json.loads((self.folder / "meta.json").read_text())
        n, c, h, w = self.meta["images_shape"]
        self.images = np.memmap(self.folder / "images.f32", dtype=np.float32, mode="r", shape=(n, c, h, w))
        self.labels = np.memmap(self.folder / "labels.u8", dtype=np.uint8, mode="r", shape=(n, h, w))
        self.index = pd.read_csv(self.folder / "index.csv")

    @property
    def n_classes(self) -> int:
        return len(self.meta["label_values"])

    @property
    def n_channels(self) -> int:
        return self.meta["images_shape"][1]

    @property
    def pool_ids(self) -> np.ndarray:
        """Sample ids of every slice of the training cases: the pool annotation draws from."""
        return self.index.loc[self.index.subset == "train", "sample_id"].to_numpy()

    def read_images(self, sample_ids) -> np.ndarray:
        """Copies of the images of ``sample_ids`` (B, C, H, W), read from the file, not through the
        memory map: a scan of the whole pool (oracle, DAL, LL) would otherwise leave every page it
        touched in this process's resident memory (1.3 GB at 36,000 slices of 4 x 48 x 48)."""
        sample_ids = np.asarray(sample_ids, dtype=np.int64)
        out = np.empty((len(sample_ids), *self.images.shape[1:]), dtype=np.float32)
        size = out[0].nbytes if len(out) else 0
        with open(self.folder / "images.f32", "rb", buffering=0) as f:
            for row, sid in zip(out, sample_ids):
                if not 0 <= sid < len(self.images):
                    raise IndexError(f"sample id {sid} outside the store of {len(self.images)} slices")
                if os.preadv(f.fileno(), [memoryview(row).cast("B")], int(sid) * size) != size:
                    raise OSError(f"{self.folder / 'images.f32'}: short read at sample {sid}")
        return out

    def case_ids(self, subset: str) -> list[str]:
        return sorted(self.index.loc[self.index.subset == subset, "case"].unique())

    def case_samples(self, case_id: str) -> np.ndarray:
        """Sample ids of one case, ordered by slice (z)."""
        rows = self.index[self.index.case == case_id].sort_values("z")
        return rows.sample_id.to_numpy()

    def reference_labels(self, case_id: str) -> np.ndarray:
        """Class map ``(X, Y, Z)`` of a test case on its RAS grid, not resized: what scores compare with."""
        path = self.folder / "test_labels" / f"{case_id}.npy"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no reference labels of test case {case_id} (a store prepared by an "
                                    "older version: prepare again, e.g. snakemake prepare --forcerun prepare)")
        return np.load(path)

    @property
    def checksum(self) -> str:
        """Checksum of the store's content, written by prepare (``store_sha256`` of meta.json)."""
        if "store_sha256" not in self.meta:
            raise KeyError(f"{self.folder}/meta.json: no store_sha256 (a store prepared by an older version: "
                           "prepare again, e.g. snakemake prepare --forcerun prepare)")
        return self.meta["store_sha256"]
