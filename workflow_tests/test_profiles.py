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
GPU_RULES = {"run_round", "run_chain", "train_start", "train_vae", "save_predictions", "allocation_train"}


def rule_names() -> set[str]:
    return {name for smk in (REPO / "rules").glob("*.smk")
            for name in re.findall(r"^\s*rule (\w+):", smk.read_text(), re.M)}


def dry_run(*args: str, configfile: str = "workflow_tests/config_tiny.yaml", overlay: Path | None = None) -> str:
    """A dry run on ``configfile``, with ``overlay`` (a YAML file of overriding keys) on top."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    run = subprocess.run([sys.executable, "-m", "snakemake", "-n", *args,
                          "--configfile", configfile, *([str(overlay)] if overlay else [])],
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


def test_bare_profile_name_resolves_from_the_repository_root(tmp_path):
    assert (REPO / "slurm").resolve() == (REPO / "profiles" / "slurm").resolve()
    overlay = tmp_path / "per_round.yaml"  # one job per round, and the predictions: every GPU rule planned
    overlay.write_text("chain_rounds: false\nevaluation: {save_predictions: true}\n")
    out = dry_run("--profile", "slurm", overlay=overlay)
    # the GPU rules ask SLURM for one GPU each, in the GPU partition; the rounds are grouped
    for rule in GPU_RULES - {"run_chain", "allocation_train"}:  # run_chain and the allocation study: below
        block = re.search(rf"rule {rule}:\n(?:\s+\w+: .*\n)*?\s+resources: (.*)", out)[1]
        assert "gpu=1" in block and "slurm_partition=gpu" in block, block
    prepare = re.search(r"rule prepare:\n(?:\s+\w+: .*\n)*?\s+resources: (.*)", out)[1]
    assert "gpu=1" not in prepare and "slurm_partition=cpu" in prepare, prepare
    assert "Group job random-seed0-round1" in out and "Group job start-seed0" in out
    chained = dry_run("--profile", "slurm")  # the tiny config chains the rounds of a method and seed
    block = re.search(r"rule run_chain:\n(?:\s+\w+: .*\n)*?\s+resources: (.*)", chained)[1]
    assert "gpu=1" in block and "slurm_partition=gpu" in block, block


def test_allocation_training_asks_slurm_for_a_gpu():
    out = dry_run("--profile", "slurm", "allocation", configfile="workflow_tests/config_allocation_tiny.yaml")
    block = re.search(r"rule allocation_train:\n(?:\s+\w+: .*\n)*?\s+resources: (.*)", out)[1]
    assert "gpu=1" in block and "slurm_partition=gpu" in block, block


def test_local_profile_plans_the_workflow():
    out = dry_run("--profile", "profiles/local")
    assert "rule run_chain:" in out and "rule train_start:" in out


def test_chain_profile_differs_from_slurm_only_in_its_groups():
    chain = yaml.safe_load((REPO / "profiles" / "slurm-chain" / "config.yaml").read_text())
    assert {k: v for k, v in chain.items() if k != "groups"} == {k: v for k, v in SLURM.items() if k != "groups"}
    assert set(SLURM["groups"]) <= set(chain["groups"]) <= rule_names()
    assert all("{round}" not in name and "{method}" not in name for name in chain["groups"].values())
    # one GPU per submission, not per cluster: grouped network jobs queue for it inside their submission
    assert SLURM["resources"] == ["gpu=1"] and SLURM["set-resource-scopes"] == ["gpu=local"]


def test_chain_profile_submits_whole_chains_with_the_paired_methods_together():
    out = dry_run("--profile", "profiles/slurm-chain", "--config", "chain_rounds=False")
    config = yaml.safe_load((REPO / "workflow_tests" / "config_tiny.yaml").read_text())
    blocks = out.split("Group job ")[1:]
    seen = {}
    for block in blocks:
        name = block.split(" ", 1)[0]
        methods = set(re.findall(r"wildcards: method=(\w+), seed=\d+, round=\d+", block))
        starts = re.findall(r"rule train_start:", block)
        seen.setdefault(name, []).append((frozenset(methods), len(starts)))
        # every round of each method in the submission (random's round 0 is the shared start, copied in it)
        for method in methods:
            rounds = set(re.findall(rf"output: .*runs/{method}/seed\d+/round(\d+)/model.pt", block))
            assert rounds == {str(k) for k in range(len(config["schedule"]))} or method == "full", (method, rounds)
    paired = frozenset(m for m in config["methods"] if m in ("random", "ggs", "oracle"))
    for seed in config["seeds"]:
        subs = seen[f"seed{seed}"]
        # the shared start and the chains that start from it: one submission; every other method one each
        others = [m for m in config["methods"] if m not in paired]
        expected = [(paired, 1)] + [(frozenset({m}), 0) for m in others]
        assert len(subs) == len(expected) and set(subs) == set(expected), subs


def test_plan_benchmark_counts_one_gpu_per_chain_submission(tmp_path):
    sys.path.insert(0, str(REPO / "benchmarks"))
    import plan_paper_scale

    profiles = {g: yaml.safe_load((REPO / "profiles" / f / "config.yaml").read_text())
                for g, f in plan_paper_scale.PROFILES.items()}
    config = REPO / "workflow_tests" / "config_tiny.yaml"
    rows = {g: plan_paper_scale.plan(config, {"results_dir": str(tmp_path), "chain_rounds": False}, profile)
            for g, profile in profiles.items()}
    assert rows["round"]["cluster_jobs"] == rows["chain"]["cluster_jobs"]
    assert rows["chain"]["submissions"] < rows["round"]["submissions"]
    assert rows["round"]["max_gpus"] == rows["chain"]["max_gpus"] == 1
    assert rows["chain"]["max_hours"] > rows["round"]["max_hours"]  # the paired chains run in series
