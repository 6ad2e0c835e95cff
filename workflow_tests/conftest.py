"""Shared fixtures: a tiny prepared slice store and a way to run the real workflow."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "workflow_tests" / "config_tiny.yaml"
MODALITIES = ["t1", "t1ce", "t2", "flair"]
TINY_FEATURES = [4, 8, 8, 16, 16, 4]


@pytest.fixture(scope="session")
def tiny_raw(tmp_path_factory) -> Path:
    from slicepick.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("raw")
    generate_dataset(root, n_cases=4, shape=(32, 32, 20), seed=5)
    return root


@pytest.fixture(scope="session")
def tiny_store(tiny_raw, tmp_path_factory):
    from slicepick.data.prepare import SliceStore, prepare_dataset
    from slicepick.data.readers import find_cases

    out = tmp_path_factory.mktemp("store") / "prepared"
    prepare_dataset(find_cases("brats", tiny_raw, {"modalities": MODALITIES}), out, modalities=MODALITIES,
                    label_values=[0, 1, 2, 4], regions={"WT": [1, 2, 4], "TC": [1, 4], "ET": [4]},
                    test_fraction=0.25, split_seed=0)
    return SliceStore(out)


@pytest.fixture(scope="session")
def tiny_spec(tiny_store) -> dict:
    from slicepick.models import unet_spec

    return unet_spec(tiny_store.n_channels, tiny_store.n_classes, TINY_FEATURES)


def split_pool(store, n_annotated: int, seed: int = 0):
    """A seeded annotated / unannotated split of the pool."""
    pool = store.pool_ids
    annotated = np.sort(np.random.default_rng(seed).choice(pool, size=n_annotated, replace=False))
    return annotated, np.setdiff1d(pool, annotated)


def copy_repo(dest: Path) -> Path:
    """The repository's files (tracked and new, not ignored) in ``dest``: a workflow to run or edit there."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                           capture_output=True, text=True).stdout.split("\0")
    for name in filter(None, files):
        src, dst = REPO / name, dest / name
        if not src.exists() and not src.is_symlink():
            continue  # deleted in the working tree
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst, follow_symlinks=False)
    return dest


def snakemake(workdir: Path, *args: str, configfile: Path = TINY_CONFIG, timeout: int = 1800,
              check: bool = True, repo: Path = REPO) -> subprocess.CompletedProcess:
    """Run the workflow of ``repo`` (and its library) in ``workdir`` (outputs stay there), as a user would."""
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(repo / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(configfile), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(repo)}
    # cwd=repo: `python -m` puts the working directory first on sys.path, so the Snakefile imports
    # the library of ``repo`` (whose module files are the methods' rule inputs)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=repo)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-6000:]}")
    return proc
