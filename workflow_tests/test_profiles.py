"""The execution profiles: `snakemake --profile slurm` from the repository root finds profiles/slurm, the
rules it names exist, and its GPU requests and groups reach the plan (dry runs, no cluster needed)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SLURM = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
GPU_RULES = {"train", "suggest", "train_vae", "allocation_train"}


def rule_names() -> set[str]:
    return {name for smk in (REPO / "rules").glob("*.smk")
            for name in re.findall(r"^\s*rule (\w+):", smk.read_text(), re.M)}


def dry_run(*args: str, configfile: str = "workflow_tests/config_tiny.yaml") -> str:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    run = subprocess.run([sys.executable, "-m", "snakemake", "-n", *args,
                          "--configfile", configfile],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    return run.stdout + run.stderr


def test_profile_names_only_rules_of_the_workflow():
    # Snakemake ignores unknown rule names here, so a renamed rule would silently lose its GPU
    named = set(SLURM["set-resources"]) | set(SLURM["groups"])
    assert named <= rule_names(), f"not rules of the workflow: {sorted(named - rule_names())}"
    assert {r for r, res in SLURM["set-resources"].items() if res.get("gpu")} == GPU_RULES
    local = yaml.safe_load((REPO / "profiles" / "local" / "config.yaml").read_text())
    assert set(local["set-resources"]) == GPU_RULES


def test_bare_profile_name_resolves_from_the_repository_root():
    assert (REPO / "slurm").resolve() == (REPO / "profiles" / "slurm").resolve()
    out = dry_run("--profile", "slurm")
    # the GPU rules ask SLURM for one GPU each, in the GPU partition; the rounds are grouped
    for rule in GPU_RULES - {"allocation_train"}:  # the default target; the allocation study: below
        block = re.search(rf"rule {rule}:\n(?:\s+\w+: .*\n)*?\s+resources: (.*)", out)[1]
        assert "gpu=1" in block and "slurm_partition=gpu" in block, block
    prepare = re.search(r"rule prepare:\n(?:\s+\w+: .*\n)*?\s+resources: (.*)", out)[1]
    assert "gpu=1" not in prepare and "slurm_partition=cpu" in prepare, prepare
    assert "Group job random-seed0-round1" in out


def test_allocation_training_asks_slurm_for_a_gpu():
    out = dry_run("--profile", "slurm", "allocation", configfile="workflow_tests/config_allocation_tiny.yaml")
    block = re.search(r"rule allocation_train:\n(?:\s+\w+: .*\n)*?\s+resources: (.*)", out)[1]
    assert "gpu=1" in block and "slurm_partition=gpu" in block, block


def test_local_profile_plans_the_workflow():
    out = dry_run("--profile", "profiles/local")
    assert "rule train:" in out
