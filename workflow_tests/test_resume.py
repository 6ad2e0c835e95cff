"""Pre-emption: a training job killed with SIGKILL mid-epoch resumes from its last checkpoint
and ends with exactly the weights of an uninterrupted run (CPU, same thread count: bit for bit)."""
from __future__ import annotations

import json
import os
import pickle
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from slicepick.data.prepare import SliceStore, prepare_dataset
from slicepick.data.readers import find_cases
from slicepick.data.synthetic import generate_dataset
from slicepick.models import build_unet
from slicepick.rounds import make_initial_selection
from slicepick.training import TrainConfig, train_segmentation

REPO = Path(__file__).resolve().parents[1]
EPOCHS = 6
DATASET = {"modalities": ["t1", "t1ce", "t2", "flair"], "label_values": [0, 1, 2, 4],
           "regions": {"WT": [1, 2, 4]}, "test_fraction": 0.25, "split_seed": 0}

# One training job as the workflow's train rule runs it: train_round, then model.pt, checkpoint deleted.
DRIVER = """
import json, sys, torch
from slicepick.joblog import start_job
from slicepick.rounds import train_round
a = json.loads(sys.argv[1])
start_job(a["log"], threads=1)
train_round(a["store"], a["selection"], a["model"], a["log_csv"], a["metrics"], dataset="resume", method="random",
            method_cfg={}, seed=0, round_index=0, fraction=0.6, unet_features=[8, 16, 16, 32, 32, 8],
            training={"epochs_per_round": %d, "batch_size": 4, "lr": 1e-3, "device": "cpu",
                      "augment": {"enabled": True, "elastic_prob": 0.5}})
""" % EPOCHS


@pytest.fixture(scope="module")
def store_and_selection(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    generate_dataset(root / "raw", n_cases=4, shape=[32, 32, 20], seed=5)
    prepare_dataset(find_cases("brats", root / "raw", DATASET), root / "store", **DATASET)
    make_initial_selection(root / "store", root / "selection.csv", method="random", method_cfg={}, seed=0,
                           schedule=[0.6])
    return root / "store", root / "selection.csv"


def start_training(store, selection, out: Path) -> subprocess.Popen:
    out.mkdir(parents=True, exist_ok=True)
    args = {"store": str(store), "selection": str(selection), "model": str(out / "model.pt"),
            "log_csv": str(out / "train_log.csv"), "metrics": str(out / "metrics.csv"), "log": str(out / "train.log")}
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-c", DRIVER, json.dumps(args)], env=env)


def checkpoint_epoch(path: Path) -> int:
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])
    except (FileNotFoundError, RuntimeError, EOFError, KeyError):
        return 0  # not written yet (the file is replaced atomically, so this is rare)


@pytest.mark.slow
def test_sigkill_mid_epoch_then_rerun_resumes_and_matches_uninterrupted(store_and_selection, tmp_path):
    store, selection = store_and_selection

    reference = start_training(store, selection, tmp_path / "uninterrupted")  # runs alongside, one thread each

    # Kill the job half-way through epoch 3: after the checkpoint of epoch 2, before that of epoch 3.
    out = tmp_path / "preempted"
    job = start_training(store, selection, out)
    deadline = time.monotonic() + 300
    while checkpoint_epoch(out / "checkpoint.pt") < 2:
        assert job.poll() is None, "training ended before it could be killed"
        assert time.monotonic() < deadline, "no checkpoint after 300 s"
        time.sleep(0.05)
    state = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)
    epoch_seconds = json.loads(state["history"])[-1]["seconds"]
    time.sleep(epoch_seconds / 2)
    job.send_signal(signal.SIGKILL)
    job.wait(timeout=60)
    assert job.returncode == -signal.SIGKILL
    killed_after = checkpoint_epoch(out / "checkpoint.pt")
    assert 2 <= killed_after < EPOCHS
    assert not (out / "model.pt").exists()

    rerun = start_training(store, selection, out)
    assert rerun.wait(timeout=300) == 0
    assert reference.wait(timeout=300) == 0
    log_text = (out / "train.log").read_text()
    assert f"after epoch {killed_after}" in log_text, log_text
    # the rerun trains only the remaining epochs
    assert len(re.findall(r"epoch \d+/%d loss" % EPOCHS, log_text)) == EPOCHS - killed_after, log_text
    assert not (out / "checkpoint.pt").exists()  # removed once model.pt is written

    expected = torch.load(tmp_path / "uninterrupted" / "model.pt", map_location="cpu", weights_only=True)
    resumed = torch.load(out / "model.pt", map_location="cpu", weights_only=True)
    assert expected["state_dict"].keys() == resumed["state_dict"].keys()
    differing = [k for k, v in expected["state_dict"].items() if not torch.equal(v, resumed["state_dict"][k])]
    assert differing == [], f"tensors differ after resume: {differing}"
    losses = [pd.read_csv(d / "train_log.csv").loss.tolist() for d in (tmp_path / "uninterrupted", out)]
    assert losses[0] == losses[1]


class NotWeights:
    """Anything but tensors and plain containers: a checkpoint holding it must not be unpickled."""


def test_checkpoint_is_loaded_without_arbitrary_pickle(store_and_selection, tmp_path):
    store_dir, selection = store_and_selection
    checkpoint = tmp_path / "checkpoint.pt"
    torch.save({"run_id": "", "epoch": 1, "payload": NotWeights()}, checkpoint)
    model = build_unet(4, 4, [4, 8, 8, 16, 16, 4])
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        train_segmentation(model, SliceStore(store_dir), pd.read_csv(selection).sample_id.to_numpy(),
                           TrainConfig(epochs=1), device="cpu", log_csv=tmp_path / "log.csv", checkpoint=checkpoint)
