"""The workflow run for real on the tiny config, twice, in temporary folders."""
import shutil

import numpy as np
import nibabel as nib
import pandas as pd
import pytest
import yaml

from conftest import REPO, TINY_CONFIG, snakemake
from slicepick.strategies import get_strategy

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


def last_selection(method, seed):
    return f"results/tiny/runs/{method}/seed{seed}/round{rounds_of(method) - 1}/selection.csv"


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """The whole tiny grid, then the same config from scratch in another folder for the first seed
    (every method's last selection: all its rounds retrained), to check the selections repeat."""
    first = tmp_path_factory.mktemp("first")
    snakemake(first, "--cores", "2")
    second = tmp_path_factory.mktemp("second")
    snakemake(second, "--cores", "2", *[last_selection(m, SEEDS[0]) for m in METHODS])
    return first / "results" / "tiny", second / "results" / "tiny"


def test_outputs_exist_and_metrics_are_tidy(two_runs):
    ds = two_runs[0]
    metrics = pd.read_csv(ds / "metrics.csv")
    for col in ["dataset", "method", "seed", "round", "fraction", "n_annotated", "case", "region", "dice", "hd95"]:
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
                 "vae/z3/reconstructions.png"]:
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
    snakemake(ds.parent.parent, "--cores", "1", target)
    files = sorted((ds.parent.parent / target).glob("*_pred.nii.gz"))
    assert files
    case = files[0].name.replace("_pred.nii.gz", "")
    ref = nib.load(ds / "raw" / case / f"{case}_seg.nii.gz")
    pred = nib.load(files[0])
    assert pred.shape == ref.shape and np.allclose(pred.affine, ref.affine)
    assert set(np.unique(np.asarray(pred.dataobj))) <= {0, 1, 2, 4}


def test_ablation_target_builds_its_tables(two_runs):
    workdir = two_runs[0].parent.parent
    snakemake(workdir, "--cores", "2", "ablations")
    table = (two_runs[0] / "tables" / "ablation_angular_condition.md").read_text()
    assert "ggs_no_angle" in table and "ggs" in table and "p (Wilcoxon)" in table
    assert "ggs_no_angle" not in pd.read_csv(two_runs[0] / "metrics.csv").method.unique()


def test_rerun_has_nothing_to_do(two_runs):
    workdir = two_runs[0].parent.parent
    proc = snakemake(workdir, "-n")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_lint_is_clean(tmp_path):
    proc = snakemake(tmp_path, "--lint", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Congratulations" in proc.stdout + proc.stderr or proc.stdout.strip() == ""
