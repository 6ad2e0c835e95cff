"""The cluster path for real: the tiny config run with `snakemake --profile slurm` on a single-node SLURM
started on this machine (workflow_tests/slurm_cluster.py).

What is overridden, and why: the profile's site placeholders (partition, account) point at the test
cluster, memory requests are capped to fit this machine, and the first status check comes sooner.
The GPU requests stay as the profile has them: the test node declares two GPUs.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from conftest import copy_repo as copy_repo_files
from workflow_tests.slurm_cluster import ACCOUNT, PARTITION, SingleNodeSlurm

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "profiles" / "slurm" / "config.yaml"
# The tiny config, made smaller to keep the test to a few minutes on 2 cores: seed 0, no NIfTI export;
# the targets below are the selections of random, ggs (which needs the VAE job) and full.
SMALLER = "seeds: [0]\nevaluation: {save_predictions: false}\n"
TINY = ["--configfile", "workflow_tests/config_tiny.yaml", "smaller.yaml"]
SELECTIONS = sorted(f"results/tiny/runs/{method}/seed0/round{k}/selection.csv"
                    for method, k in [("random", 0), ("random", 1), ("ggs", 0), ("ggs", 1), ("full", 0)])
LATENT_FIGURE = "results/tiny/figures/latent_space_ggs.png"  # a local rule: drawn on the submitting host
# the last round's models too, so every round group holds its training, as in a full run
MODELS = [f"results/tiny/runs/{method}/seed0/round{k}/model.pt" for method, k in [("random", 1), ("ggs", 1), ("full", 0)]]
SUBMITTED = re.compile(r"has been submitted with SLURM jobid (\d+) \(log: \S*/(rule|group)_([^/\s]+)/")


def copy_repo(dest: Path) -> Path:
    """The repository in ``dest`` with the smaller config beside it, so runs write nothing here."""
    copy_repo_files(dest)
    (dest / "smaller.yaml").write_text(SMALLER)
    return dest


def pointed_at_test_cluster(profile: dict, *, account: str | None, max_mem_mb: int) -> dict:
    """The profile's resources with the site placeholders replaced: what a user edits for their cluster."""
    def site(resources: dict) -> dict:
        out = {key: value for key, value in resources.items() if key != "slurm_account"}
        if "slurm_partition" in out:
            out["slurm_partition"] = PARTITION
        if "mem_mb" in out:
            out["mem_mb"] = min(int(out["mem_mb"]), max_mem_mb)
        return out

    default = site(profile["default-resources"])
    if account is not None:
        default["slurm_account"] = account
    return {"default-resources": default,
            "set-resources": {rule: site(res) for rule, res in profile["set-resources"].items()},
            "slurm-init-seconds-before-status-checks": 2}


def snakemake(workdir: Path, *args: str, timeout_s: int) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(workdir), OMP_NUM_THREADS="1")
    # SIGINT first: Snakemake then cancels its SLURM jobs; SIGKILL 30 s later if it is still there
    return subprocess.run(["timeout", "-s", "INT", "-k", "30", str(timeout_s), sys.executable, "-m", "snakemake",
                           *args], cwd=workdir, env=env, capture_output=True, text=True)


def assert_ok(run: subprocess.CompletedProcess) -> None:
    assert run.returncode == 0, f"exit {run.returncode}\n{run.stdout[-5000:]}\n{run.stderr[-15000:]}"


def selections(workdir: Path) -> dict[str, str]:
    return {str(p.relative_to(workdir)): p.read_text()
            for p in sorted((workdir / "results").glob("*/runs/*/seed*/round*/selection.csv"))}


def run_with_profile(workdir: Path, overlay: dict, *targets: str, timeout_s: int) -> subprocess.CompletedProcess:
    (workdir / "test-cluster.yaml").write_text(yaml.safe_dump(overlay))
    # `--profile slurm` exactly as a user types it, then the test cluster's site values
    return snakemake(workdir, *targets, "--profile", "slurm", "--profile", "test-cluster.yaml", *TINY,
                     timeout_s=timeout_s)


@pytest.mark.slow
def test_tiny_workflow_through_slurm_with_accounting(tmp_path):
    workdir = copy_repo(tmp_path / "repo")
    profile = yaml.safe_load(PROFILE.read_text())
    assert profile["slurm-status-command"] == "sacct"
    overlay = pointed_at_test_cluster(profile, account=ACCOUNT, max_mem_mb=1000)
    # the reference run on this machine without SLURM goes on meanwhile (the cluster run waits a lot)
    local = copy_repo(tmp_path / "local")
    with ThreadPoolExecutor(1) as pool:
        local_run = pool.submit(snakemake, local, *SELECTIONS, "--cores", "1", *TINY, timeout_s=900)
        with SingleNodeSlurm(tmp_path / "cluster", accounting=True) as cluster:
            run = run_with_profile(workdir, overlay, *SELECTIONS, *MODELS, LATENT_FIGURE, timeout_s=1200)
            accounted = {job["JobId"]: job for job in cluster.completed_jobs()}
        assert_ok(local_run.result())
    assert_ok(run)

    submitted = {int(m[1]): (m[2], m[3]) for m in SUBMITTED.finditer(run.stderr)}
    groups = {jobid for jobid, (kind, _) in submitted.items() if kind == "group"}
    run_uuid = re.search(r"SLURM run ID: (\S+)", run.stderr)[1]
    # every submission went through the scheduler and its accounting lists it as completed, nothing else
    assert sorted(map(int, accounted)) == sorted(submitted), (submitted, accounted)
    for jobid, job in accounted.items():
        assert (job["JobState"], job["JobName"], job["Partition"], job["Account"]) == \
               ("COMPLETED", run_uuid, PARTITION, ACCOUNT), job
        # the GPU request of the profile reached SLURM: one GPU per network job (a chain of rounds, a
        # round group, the shared start, the VAE), none for data preparation
        wants_gpu = int(jobid) in groups or submitted[int(jobid)][1] in ("train_vae", "run_chain")
        assert ("gres/gpu=1" in job["AllocTRES"]) == wants_gpu, (job, submitted[int(jobid)])
    # one submission per chain of rounds (random, ggs: chain_rounds is on in the tiny config), one for the
    # shared start of the seed and one round group for full, in place of one per rule
    assert sorted(name for kind, name in submitted.values()) == [
        "full-seed0-round0_run_round",
        "prepare",
        "run_chain",
        "run_chain",
        "start-seed0_train_start",
        "synthesize",
        "train_vae",
    ]
    assert "localrule latent_figure:" in run.stderr  # ran on the submitting host
    assert (workdir / LATENT_FIGURE).exists()

    # the same selections as the run on this machine without SLURM
    assert sorted(selections(workdir)) == SELECTIONS
    assert selections(workdir) == selections(local)


@pytest.mark.slow
def test_status_by_squeue_on_cluster_without_accounting(tmp_path):
    """A cluster without slurmdbd: the one setting docs/cluster.md tells users to change
    (slurm-status-command: squeue; no account) and the run goes through."""
    workdir = copy_repo(tmp_path / "repo")
    profile = yaml.safe_load(PROFILE.read_text())
    overlay = pointed_at_test_cluster(profile, account=None, max_mem_mb=1000)
    overlay["slurm-status-command"] = "squeue"
    target = "results/tiny/prepared"
    with SingleNodeSlurm(tmp_path / "cluster", accounting=False) as cluster:
        sacct = subprocess.run(["sacct", "-X", "-n"], capture_output=True, text=True, timeout=60)
        run = run_with_profile(workdir, overlay, target, timeout_s=600)
        recorded = cluster.completed_jobs()
    # no accounting: the profile's default status check (sacct) cannot work here
    assert sacct.returncode != 0 and "accounting storage is disabled" in sacct.stderr
    assert_ok(run)
    assert "Falling back to 'sacct'" not in run.stderr
    submitted = {m[1] for m in SUBMITTED.finditer(run.stderr)}
    assert len(submitted) == 2  # synthesize, prepare
    assert {job["JobId"] for job in recorded} == submitted
    assert {job["JobState"] for job in recorded} == {"COMPLETED"}
    assert (workdir / target).exists()
