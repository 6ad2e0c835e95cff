"""Shared fixtures: a tiny prepared slice store (4 synthetic cases of 32 x 32 x 20) and helpers."""
from __future__ import annotations

import numpy as np
import pytest

from slicepick.data.prepare import SliceStore, prepare_dataset
from slicepick.data.readers import find_cases
from slicepick.data.synthetic import generate_dataset
from slicepick.models import unet_spec

MODALITIES = ["t1", "t1ce", "t2", "flair"]
TINY_FEATURES = [4, 8, 8, 16, 16, 4]


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory) -> SliceStore:
    root = tmp_path_factory.mktemp("tiny")
    generate_dataset(root / "raw", n_cases=4, shape=(32, 32, 20), seed=1)
    cases = find_cases("brats", root / "raw", {"modalities": MODALITIES})
    prepare_dataset(cases, root / "store", modalities=MODALITIES, label_values=[0, 1, 2, 4],
                    regions={"WT": [1, 2, 4], "TC": [1, 4], "ET": [4]}, test_fraction=0.25, split_seed=0)
    return SliceStore(root / "store")


@pytest.fixture(scope="session")
def tiny_spec(tiny_store) -> dict:
    return unet_spec(tiny_store.n_channels, tiny_store.n_classes, TINY_FEATURES)


def split_pool(store: SliceStore, n_annotated: int, seed: int = 0):
    """A seeded annotated / unannotated split of the pool."""
    pool = store.pool_ids
    annotated = np.sort(np.random.default_rng(seed).choice(pool, size=n_annotated, replace=False))
    return annotated, np.setdiff1d(pool, annotated)
