"""The workflow run for real on the tiny config, twice, in temporary folders: once with a method's
rounds chained in one job (the default), once (the first seed) with one job per round."""
import os
import re
import subprocess

import numpy as np
import nibabel as nib
import pandas as pd
import pytest
import yaml

from conftest import TINY_CONFIG, copy_repo, snakemake
from slicepick.diagnostics import COLUMNS as SELECTION_STATS_COLUMNS
from slicepick.strategies import get_strategy, shares_start

pytestmark = pytest.mark.slow
CFG = yaml.safe_load(TINY_CONFIG.read_text())
METHODS = list(CFG["methods"])
SEEDS = CFG["seeds"]
ROUNDS = len(CFG["schedule"])


def rounds_of(method):
    return 1 if method == "full" else ROUNDS


# Methods that start from the shared seeded random set. ClsMC and full choose their own round 0,
# and neither depends on the run's seed (ClsMC's ranking comes from the VAE, trained once).
RANDOM_START = [m for m in METHODS if not hasattr(get_strategy(m), "initial_selection")]
SHARING = [m for m in METHODS if shares_start(m)]  # and the plain U-Net: one round-0 model per seed


def last_selection(method, seed):
    return f"results/tiny/runs/{method}/seed{seed}/round{rounds_of(method) - 1}/selection.csv"


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """The whole tiny grid (rounds chained), then the same config from scratch in another folder for
    the first seed with one job per round (every method's last selection: all its rounds retrained),
    to check the selections repeat whichever way the jobs are cut."""
    first = copy_repo(tmp_path_factory.mktemp("first"))  # a copy, so a test can edit one method's module
    snakemake(first, "--cores", "2", repo=first)
    second = tmp_path_factory.mktemp("second")
    snakemake(second, "--cores", "2", *[last_selection(m, SEEDS[0]) for m in METHODS], "--config",
              "chain_rounds=False")
    return first / "results" / "tiny", second / "results" / "tiny"


def test_outputs_exist_and_metrics_are_tidy(two_runs):
    ds = two_runs[0]
    metrics = pd.read_csv(ds / "metrics.csv")
    for col in ["dataset", "method", "seed", "round", "fraction", "n_annotated", "case", "region", "dice", "hd95",
                "degenerate"]:
        assert col in metrics.columns
    n_test = len(pd.read_csv(ds / "prepared" / "split.csv").query("subset == 'test'"))
    expected_rows = sum(rounds_of(m) for m in METHODS) * len(SEEDS) * n_test * 3
    assert len(metrics) == expected_rows
    assert metrics.dice.between(0, 1).all() and (metrics.hd95 >= 0).all()
    assert set(metrics.method) == set(METHODS) and set(metrics.region) == {"WT", "TC", "ET"}
    for name in ["tables/summary.csv", "tables/summary.md", "tables/summary.tex",
                 "figures/learning_curves.pdf", "figures/learning_curves.png",
                 "tables/comparison.md", "tables/comparison.tex", "tables/wilcoxon_all_pairs.csv",
                 "figures/region_dice.png", "figures/training_loss.png", "figures/latent_space_ggs.png",
                 "vae/z3/reconstructions.png", "tables/selection_stats.md", "figures/selection_stats.png"]:
        assert (ds / name).stat().st_size > 0, name
    table = (ds / "tables" / "summary.md").read_text()
    assert all(m in table for m in METHODS) and "±" in table
    assert r"\pm" in (ds / "tables" / "summary.tex").read_text()


def test_schedule_is_followed_and_round0_is_shared(two_runs):
    ds = two_runs[0]
    pool = (pd.read_csv(ds / "prepared" / "index.csv").subset == "train").sum()
    for seed in SEEDS:
        starts = {m: pd.read_csv(ds / f"runs/{m}/seed{seed}/round0/selection.csv") for m in RANDOM_START}
        first = next(iter(starts.values()))
        assert all(s.equals(first) for s in starts.values())
        for m in METHODS:
            for k in range(rounds_of(m)):
                sel = pd.read_csv(ds / f"runs/{m}/seed{seed}/round{k}/selection.csv")
                target = pool if m == "full" else max(1, round(CFG["schedule"][k] * pool))
                assert len(sel) == target and sel.sample_id.is_unique
                assert (ds / f"runs/{m}/seed{seed}/round{k}/train_log.csv").exists()


def test_sharing_methods_have_one_round0_model_per_seed(two_runs):
    """random, GGS and oracle: the same round-0 rows in metrics.csv (one shared model)."""
    metrics = pd.read_csv(two_runs[0] / "metrics.csv")
    round0 = metrics[(metrics["round"] == 0) & metrics.method.isin(SHARING)]
    assert len(SHARING) >= 3
    for seed in SEEDS:
        rows = {m: round0[(round0.method == m) & (round0.seed == seed)].drop(columns="method").reset_index(drop=True)
                for m in SHARING}
        first = rows[SHARING[0]]
        assert len(first) and all(r.equals(first) for r in rows.values()), seed


def test_selection_stats_one_row_per_method_seed_and_round(two_runs):
    stats = pd.read_csv(two_runs[0] / "tables" / "selection_stats.csv")
    assert list(stats.columns) == SELECTION_STATS_COLUMNS
    expected = {(m, s, k) for m in METHODS for s in SEEDS for k in range(rounds_of(m))}
    assert set(zip(stats.method, stats.seed, stats["round"])) == expected and len(stats) == len(expected)
    assert stats.foreground_share.between(0, 1).all() and (stats.latent_coverage >= 0).all()
    full = stats[stats.method == "full"]
    assert (full.latent_coverage == 0).all()  # the whole pool is annotated


def test_html_report(two_runs):
    workdir = two_runs[0].parent.parent
    snakemake(workdir, "--report", "results/tiny/report.html", repo=workdir)
    html = (workdir / "results" / "tiny" / "report.html").read_text()
    for name in ["selection_stats", "learning_curves", "comparison", "training_loss", "summary"]:
        assert name in html, name


def test_same_config_same_selections_other_seed_differs(two_runs):
    first, second = two_runs
    for m in METHODS:
        for seed in SEEDS[:1]:
            for k in range(rounds_of(m)):
                a = pd.read_csv(first / f"runs/{m}/seed{seed}/round{k}/selection.csv")
                b = pd.read_csv(second / f"runs/{m}/seed{seed}/round{k}/selection.csv")
                assert a.equals(b), (m, seed, k)
    for m in RANDOM_START:
        last = rounds_of(m) - 1
        a = pd.read_csv(first / f"runs/{m}/seed{SEEDS[0]}/round{last}/selection.csv")
        b = pd.read_csv(first / f"runs/{m}/seed{SEEDS[1]}/round{last}/selection.csv")
        assert not a.sample_id.equals(b.sample_id), m


def test_predictions_are_nifti_on_the_input_grid(two_runs):
    ds = two_runs[0]
    target = f"results/tiny/runs/random/seed{SEEDS[0]}/round{ROUNDS - 1}/predictions"
    snakemake(ds.parent.parent, "--cores", "1", target, repo=ds.parent.parent)
    files = sorted((ds.parent.parent / target).glob("*_pred.nii.gz"))
    assert files
    case = files[0].name.replace("_pred.nii.gz", "")
    ref = nib.load(ds / "raw" / case / f"{case}_seg.nii.gz")
    pred = nib.load(files[0])
    assert pred.shape == ref.shape and np.allclose(pred.affine, ref.affine)
    assert set(np.unique(np.asarray(pred.dataobj))) <= {0, 1, 2, 4}


def test_ablation_target_builds_its_tables(two_runs):
    workdir = two_runs[0].parent.parent
    snakemake(workdir, "--cores", "2", "ablations", repo=workdir)
    table = (two_runs[0] / "tables" / "ablation_angular_condition.md").read_text()
    assert "ggs_no_angle" in table and "ggs" in table and "p (Wilcoxon)" in table
    assert "ggs_no_angle" not in pd.read_csv(two_runs[0] / "metrics.csv").method.unique()


def test_rerun_has_nothing_to_do(two_runs):
    workdir = two_runs[0].parent.parent
    proc = snakemake(workdir, "-n", repo=workdir)
    assert "Nothing to be done" in proc.stdout + proc.stderr


def planned_jobs(proc) -> list[tuple[str, str | None]]:
    """(rule, method wildcard or None) of every job a dry run would run."""
    jobs, rule, method = [], None, None
    for line in (proc.stdout + proc.stderr).splitlines():
        head = re.match(r"^(?:local)?rule (\w+):$", line.strip())
        if head:
            if rule is not None:
                jobs.append((rule, method))
            rule, method = head[1], None
        wildcards = re.match(r"^wildcards: (.*)$", line.strip())
        if wildcards and rule is not None:
            method = dict(kv.split("=", 1) for kv in wildcards[1].split(", ")).get("method")
    if rule is not None:
        jobs.append((rule, method))
    return jobs


def test_editing_one_method_reruns_only_that_method(two_runs):
    """A change to one method's module, or to its config block, marks only its jobs and the tables."""
    workdir = two_runs[0].parent.parent
    module = workdir / "slicepick" / "strategies" / "random.py"
    original, times = module.read_text(), module.stat()
    try:
        module.write_text(original + "\n# an edit\n")
        jobs = planned_jobs(snakemake(workdir, "-n", repo=workdir))
    finally:
        module.write_text(original)
        os.utime(module, ns=(times.st_atime_ns, times.st_mtime_ns))
    assert {m for _, m in jobs if m is not None} == {"random"}, jobs
    assert {r for r, m in jobs if m is None} == {"aggregate", "paper_tables", "selection_stats", "all"}, jobs
    assert {r for r, m in jobs if m == "random"} == {"run_chain"}  # the shared round 0 is not rerun

    cfg = yaml.safe_load(TINY_CONFIG.read_text())
    cfg["methods"]["ggs"]["angular_threshold"] = 0.7
    edited = workdir / "edited_config.yaml"
    edited.write_text(yaml.safe_dump(cfg, sort_keys=False))  # Snakemake compares params in key order
    jobs = planned_jobs(snakemake(workdir, "-n", configfile=edited, repo=workdir))
    assert {m for _, m in jobs if m is not None} == {"ggs"}, jobs
    assert {r for r, m in jobs if m is None} <= {"aggregate", "paper_tables", "selection_stats", "latent_figure",
                                                 "all"}, jobs
    # nothing was run: the finished workflow is still complete
    assert "Nothing to be done" in (lambda p: p.stdout + p.stderr)(snakemake(workdir, "-n", repo=workdir))


def test_moved_run_plans_nothing_and_reruns_one_edited_method(two_runs, tmp_path):
    """A finished run copied elsewhere with its timestamps (a checkout moved from scratch to project
    space) is complete there, and an edit to one method's module there reruns only that method."""
    moved = tmp_path / "moved"
    subprocess.run(["cp", "-a", str(two_runs[0].parent.parent), str(moved)], check=True)
    assert (moved / ".snakemake").is_dir()
    proc = snakemake(moved, "-n", repo=moved)
    assert "Nothing to be done" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    module = moved / "slicepick" / "strategies" / "random.py"
    module.write_text(module.read_text() + "\n# an edit after the move\n")
    jobs = planned_jobs(snakemake(moved, "-n", repo=moved))
    assert {m for _, m in jobs if m is not None} == {"random"}, jobs
    assert {r for r, m in jobs if m is None} == {"aggregate", "paper_tables", "selection_stats", "all"}, jobs


def test_lint_is_clean(tmp_path):
    proc = snakemake(tmp_path, "--lint", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Congratulations" in proc.stdout + proc.stderr or proc.stdout.strip() == ""
