"""Plan the paper-scale grid as the cluster would see it: jobs, SLURM submissions after grouping, plan time.

    python benchmarks/plan_paper_scale.py [CONFIG.yaml ...]

Each config is dry-run through Snakemake's API twice, with the groups and GPU limit of profiles/slurm/config.yaml
(one submission per method, seed and round) and of profiles/slurm-chain/config.yaml (whole chains of rounds: one
per method and seed, the paired methods of a seed together with their shared start), against an empty results
folder (so every job is planned). Each config also gets what its largest submission asks for (GPUs, hours). Without arguments it plans config/brats2019.yaml and
config/malc.yaml; where those are absent it builds a paper-scale stand-in in memory from config.yaml:
10 seeds, 10 rounds (the papers' BraTS and MALC schedules), 7 methods (a method not implemented yet is
planned with the random strategy's job shape, and said so). Prints one line per config and a total, then
``submissions_per_job_round:`` and ``submissions_per_job_chain:`` (submissions / jobs run on the cluster).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from slicepick.strategies import available  # noqa: E402

PAPER_METHODS = ["random", "ggs", "dal", "clsmc", "ll", "oracle", "full"]
PAPER_SCHEDULES = {  # cumulative fractions of the pool (GGS paper, Sec. 3)
    "brats2019": [0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09],
    "malc": [0.06, 0.12, 0.18, 0.24, 0.30, 0.36, 0.42, 0.48, 0.54, 0.60],
}


def stand_in_config(name: str) -> dict:
    """Overrides of config.yaml that give the paper's grid (seeds, rounds, methods) for one dataset."""
    base_methods = yaml.safe_load((REPO / "config.yaml").read_text())["methods"]
    methods = {m: base_methods.get(m) or ({} if m in available() else {"module": "random"}) for m in PAPER_METHODS}
    return {
        "dataset": {"name": name, "layout": "brats"},  # a real-data layout: a dry run reads no data
        "data_root": f"/data/{name}",
        "seeds": list(range(10)),
        "schedule": PAPER_SCHEDULES[name],
        "methods": methods,
    }


def plan(configfile: Path | None, overrides: dict, profile: dict, targets=()) -> dict:
    """Dry-run one config (its default target, or ``targets``) with a profile's groups and resources;
    returns counts, the largest GPU and runtime request of one submission, and the plan's seconds."""
    from snakemake.api import SnakemakeApi
    from snakemake.resources import Resources
    from snakemake.settings.enums import Quietness
    from snakemake.settings.types import (ConfigSettings, DAGSettings, GroupSettings, OutputSettings,
                                          ResourceSettings)

    limits = dict(item.split("=") for item in profile.get("resources", []))
    scopes = dict(item.split("=") for item in profile.get("set-resource-scopes", []))
    t0 = time.perf_counter()
    with SnakemakeApi(OutputSettings(dryrun=True, quiet=set(Quietness))) as api:
        workflow_api = api.workflow(
            resource_settings=ResourceSettings(
                resources={k: int(v) for k, v in limits.items()}, overwrite_resource_scopes=scopes,
                overwrite_resources={rule: Resources.from_mapping({k: v for k, v in res.items() if k in ("gpu", "runtime")})
                                     for rule, res in profile["set-resources"].items()}),
            config_settings=ConfigSettings(configfiles=[configfile] if configfile else [], config=overrides),
            snakefile=REPO / "Snakefile", workdir=REPO)
        workflow_api.dag(DAGSettings(targets=set(targets))).execute_workflow(
            executor="dryrun", group_settings=GroupSettings(overwrite_groups=profile["groups"]))
        seconds = time.perf_counter() - t0
        workflow = workflow_api._workflow
        dag = workflow.dag
        jobs = list(dag.jobs)
        # jobs that stay on the submitting host: localrules and rules with nothing to run (`all`)
        # (a grouped localrule, the shared start's copy, rides in its group's submission: not a job of its own)
        remote = [j for j in jobs if not (j.rule.name in workflow._localrules or j.rule.norun)]
        submissions = list({id(dag._group[j]): dag._group[j] for j in remote if j in dag._group}.values())
        submissions += [j for j in remote if j not in dag._group]
        requests = [(int(res.get("gpu", 0) or 0), float(res.get("runtime", 0) or 0))
                    for res in map(submitted_resources, submissions)]
        return {"jobs": len(jobs), "cluster_jobs": len(remote), "submissions": len(submissions), "seconds": seconds,
                "max_gpus": max(g for g, _ in requests), "max_hours": max(r for _, r in requests) / 60}


def submitted_resources(submission) -> dict:
    """What one submission asks SLURM for. A group's request as Snakemake computes it for a cluster (the dry
    run's own figure assumes local execution and adds up every job of a group)."""
    from snakemake.jobs import GroupJob
    from snakemake.resources import GroupResources

    if not isinstance(submission, GroupJob):
        return dict(submission.resources.items())
    return GroupResources.basic_layered(toposorted_jobs=submission.toposorted, constraints=submission.global_resources,
                                        run_local=False, additive_resources=["runtime"], sortby=["runtime"])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("configs", nargs="*", type=Path)
    args = parser.parse_args(argv)
    groupings = {name: yaml.safe_load((REPO / "profiles" / profile / "config.yaml").read_text())
                 for name, profile in PROFILES.items()}
    with tempfile.TemporaryDirectory(prefix="plan-") as results:
        report(args.configs, groupings, {"results_dir": results})  # nothing exists there: every job is planned


PROFILES = {"round": "slurm", "chain": "slurm-chain"}  # grouping -> profile folder


def report(configs: list[Path], groupings: dict, empty: dict) -> None:
    if configs:
        runs = [(str(path), path.resolve(), empty) for path in configs]
    else:
        runs = []
        for name in PAPER_SCHEDULES:
            path = REPO / "config" / f"{name}.yaml"
            if path.exists():
                runs.append((f"config/{name}.yaml", path, empty))
            else:
                runs.append((f"{name} (stand-in from config.yaml)", None, {**stand_in_config(name), **empty}))
        for path in sorted((REPO / "config").glob("allocation_*.yaml")):  # the allocation study: its own target
            runs.append((f"{path.name} (allocation)", path, empty, ["allocation"]))
        stand_ins = [m for m in PAPER_METHODS if m not in available()]
        if stand_ins and any(path is None for _, path, *_ in runs):
            print(f"not implemented yet, planned with random's jobs: {', '.join(stand_ins)}")
    names = list(groupings)
    print(f"{'config':<40} {'jobs':>6} {'on cluster':>10} " + " ".join(f"{'subm. ' + g:>12} {'per job':>7}" for g in names)
          + f" {'plan s':>7}")
    total = {"jobs": 0, "cluster_jobs": 0, "seconds": 0.0, **{g: 0 for g in names}}
    for label, configfile, overrides, *targets in runs:
        rows = {g: plan(configfile, overrides, profile, *targets) for g, profile in groupings.items()}
        first = rows[names[0]]
        if any(r["cluster_jobs"] != first["cluster_jobs"] for r in rows.values()):
            raise RuntimeError(f"{label}: the groupings planned different jobs: {rows}")
        print(f"{label:<40} {first['jobs']:>6} {first['cluster_jobs']:>10} "
              + " ".join(f"{rows[g]['submissions']:>12} {rows[g]['submissions'] / first['cluster_jobs']:>7.3f}" for g in names)
              + f" {sum(r['seconds'] for r in rows.values()):>7.2f}")
        for g in names:  # what one submission asks SLURM for, at the profile's per-rule values
            print(f"    {g}: largest submission asks for {rows[g]['max_gpus']} GPU(s), {rows[g]['max_hours']:.0f} h")
        if targets:
            continue  # the allocation study: one job per grid cell, nothing to group; not in the GGS totals
        total["jobs"] += first["jobs"]
        total["cluster_jobs"] += first["cluster_jobs"]
        total["seconds"] += sum(r["seconds"] for r in rows.values())
        for g in names:
            total[g] += rows[g]["submissions"]
    print(f"{'total (GGS configs)':<40} {total['jobs']:>6} {total['cluster_jobs']:>10} "
          + " ".join(f"{total[g]:>12} {total[g] / total['cluster_jobs']:>7.3f}" for g in names) + f" {total['seconds']:>7.2f}")
    for g in names:
        print(f"submissions_per_job_{g}: {total[g] / total['cluster_jobs']:.3f}")


if __name__ == "__main__":
    main()
