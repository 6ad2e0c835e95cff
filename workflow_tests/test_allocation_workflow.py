"""The allocation study (`snakemake allocation`) run for real on its tiny grid, once per session."""
import pandas as pd
import pytest
import yaml

from conftest import REPO, snakemake

pytestmark = pytest.mark.slow
CONFIG = REPO / "workflow_tests" / "config_allocation_tiny.yaml"
CFG = yaml.safe_load(CONFIG.read_text())
ALLOC = CFG["allocation"]
METHODS = {"2d": ["random", "fixed_interval", "ual", "ual_free"], "3d": ["random", "ual", "ual_free"]}
COLUMNS = ["dataset", "model", "budget", "n_volumes", "slices_per_volume", "selection", "allocation",
           "interpolation", "seed", "case", "region", "dice", "hd95", "degenerate"]


@pytest.fixture(scope="session")
def allocation_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("allocation")
    # a generous limit: a safety net for a shared machine, not a speed test (the run takes ~2 min on 2 idle cores)
    snakemake(workdir, "--cores", "2", "allocation", configfile=CONFIG, timeout=1800)
    return workdir


def test_metrics_are_tidy_and_complete(allocation_run):
    ds = allocation_run / "results" / "tiny"
    metrics = pd.read_csv(ds / "allocation" / "metrics.csv")
    assert list(metrics.columns) == COLUMNS
    n_test = len(pd.read_csv(ds / "prepared" / "split.csv").query("subset == 'test'"))
    per_model = len(ALLOC["cells"]) * len(ALLOC["seeds"]) * 3 * n_test * 3  # x interpolations, test cases, regions
    assert len(metrics) == sum(len(names) for names in METHODS.values()) * per_model
    assert set(metrics.model) == {"2d", "3d"}
    for model, names in METHODS.items():
        rows = metrics[metrics.model == model]
        assert set(rows.interpolation) == {"none", "shape_based", "morphological"}
        assert sorted(set(rows.selection.where(rows.allocation == "equal", rows.selection + "_" + rows.allocation))) \
            == sorted(names)  # the 3D model only on its own selections (training_3d.selections)
    assert (metrics.budget == (metrics.slices_per_volume * metrics.n_volumes).round()).all()
    assert metrics.dice.between(0, 1).all() and (metrics.hd95 >= 0).all()
    run = ["model", "budget", "n_volumes", "seed", "selection", "allocation", "interpolation"]
    assert metrics.degenerate.dtype == bool and (metrics.groupby(run).degenerate.nunique() == 1).all()  # one flag a model


def test_selections_meet_the_budget(allocation_run):
    plan = pd.read_csv(allocation_run / "results" / "tiny" / "allocation" / "selections.csv")
    sizes = plan.groupby(["budget", "n_volumes", "seed", "selection", "allocation"]).size()
    assert (sizes.index.get_level_values("budget") == sizes.to_numpy()).all()


def test_heatmaps_curves_and_tables_exist(allocation_run):
    out = allocation_run / "results" / "tiny" / "allocation"
    for model in ("2d", "3d"):
        for method in METHODS[model]:
            for ext in ("png", "pdf"):
                assert (out / "figures" / f"heatmap_{model}_{method}.{ext}").stat().st_size > 0
        assert (out / "figures" / f"dice_vs_volumes_{model}.png").stat().st_size > 0
    assert not (out / "figures" / "heatmap_3d_fixed_interval.png").exists()  # not a 3D selection here
    for table in ("selection", "interpolation", "allocation"):
        for ext in ("csv", "md", "tex"):
            assert (out / "tables" / f"{table}.{ext}").stat().st_size > 0
        frame = pd.read_csv(out / "tables" / f"{table}.csv")
        assert len(frame) > 0 and {"p_value", "p_holm", "n_cases"} <= set(frame.columns)
        assert (frame.p_holm >= frame.p_value - 1e-12).all()
    assert "Wilcoxon" in (out / "tables" / "selection.md").read_text()
