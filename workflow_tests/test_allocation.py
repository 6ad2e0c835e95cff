"""Unit tests of the allocation study: grid, selection, interpolation, masked 3D loss, nnU-Net export."""
from __future__ import annotations

import json
import sys

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from conftest import REPO
from slicepick.allocation.grid import (cells, config_errors, data_errors, method_names, methods, model_interpolations,
                                       slices_per_volume)
from slicepick.allocation.interpolation import fill_between, morphological, region_sets, shape_based
from slicepick.allocation.selection import choose_volumes, fixed_interval_positions, select
from slicepick.allocation.volume3d import masked_loss
from slicepick.config import ConfigError, check_config, synthetic_train_volumes

pytestmark = pytest.mark.filterwarnings("ignore:builtin type:DeprecationWarning")  # ITK's SWIG wrappers
BRATS_REGIONS = {"WT": [1, 2, 4], "TC": [1, 4], "ET": [4]}


# --- grid and selection -------------------------------------------------------------------------

@pytest.mark.parametrize("n, k, offset, expected", [
    (10, 5, 0.0, [0, 2, 4, 6, 8]),
    (10, 5, 0.5, [1, 3, 5, 7, 9]),
    (10, 3, 0.0, [0, 3, 6]),
    (10, 3, 0.9, [3, 6, 9]),
    (7, 7, 0.3, [0, 1, 2, 3, 4, 5, 6]),
    (40, 1, 0.25, [10]),
])
def test_fixed_interval_positions(n, k, offset, expected):
    assert fixed_interval_positions(n, k, offset).tolist() == expected


@pytest.mark.parametrize("n, k, offset", [(5, 6, 0.0), (5, 0, 0.0), (5, 2, 1.0), (5, 2, -0.1)])
def test_fixed_interval_refuses_impossible(n, k, offset):
    with pytest.raises(ValueError):
        fixed_interval_positions(n, k, offset)


def test_every_cell_meets_its_budget_and_spreads_the_remainder():
    for budget in range(1, 41):
        for s in range(1, budget + 1):
            counts = slices_per_volume(budget, s)
            assert sum(counts) == budget and len(counts) == s
            assert max(counts) - min(counts) <= 1 and counts == sorted(counts, reverse=True)
    with pytest.raises(ValueError):
        slices_per_volume(3, 4)


@pytest.mark.parametrize("selection, allocation", [("random", "equal"), ("fixed_interval", "equal"),
                                                   ("ual", "equal"), ("ual", "free")])
def test_every_method_meets_the_budget_exactly(selection, allocation):
    rng = np.random.default_rng(0)
    sizes = {f"case{i}": int(n) for i, n in enumerate(rng.integers(12, 20, size=6))}
    images = {c: rng.normal(size=(n, 2, 16, 16)).astype(np.float32) for c, n in sizes.items()}
    for budget, s in [(6, 6), (7, 3), (12, 4), (13, 5), (20, 2)]:
        volumes = {c: sizes[c] for c in choose_volumes(list(sizes), s, seed=1, budget=budget)}
        picked = select(selection, allocation, volumes, budget, seed=1, features=images.__getitem__, ual_grid=4)
        assert sum(len(p) for p in picked.values()) == budget, (selection, allocation, budget, s)
        for case, positions in picked.items():
            assert len(set(positions.tolist())) == len(positions)
            assert all(0 <= p < volumes[case] for p in positions)
        if allocation == "equal":
            assert sorted((len(picked[c]) for c in volumes), reverse=True) == slices_per_volume(budget, s)
            # the remainder goes to the first volumes drawn
            assert [len(picked[c]) for c in volumes] == slices_per_volume(budget, s)


def test_volumes_depend_on_the_seed_and_cell_only():
    cases = [f"c{i}" for i in range(10)]
    a = choose_volumes(cases, 4, seed=3, budget=12)
    assert a == choose_volumes(list(reversed(cases)), 4, seed=3, budget=12)
    assert len(set(a)) == 4 and set(a) <= set(cases)


def test_free_allocation_is_only_for_ual():
    with pytest.raises(ValueError, match="free"):
        select("random", "free", {"a": 10}, 3, seed=0)


# --- refusals of impossible cells ---------------------------------------------------------------

def test_config_refuses_impossible_cells_naming_them():
    lines = config_errors({"budgets": [4, 8], "n_volumes": [2, 6]}, n_train_volumes=5)
    assert "allocation cell B=4, s=6: more volumes than slices in the budget (s > B)" in lines[0]
    assert any("B=8, s=6" in line and "5 training volumes" in line for line in lines)
    assert len(lines) == 2


def test_check_config_refuses_a_cell_at_start_up():
    schema = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    check_config(config, schema)  # the default grid is possible
    n_train = synthetic_train_volumes(config["dataset"])  # the default's training volumes
    config["allocation"]["budgets"] = [2 * (n_train + 1)]
    config["allocation"]["n_volumes"] = [2, n_train + 1]
    with pytest.raises(ConfigError, match=rf"allocation cell B={2 * (n_train + 1)}, s={n_train + 1}: s is larger than "
                                          rf"the {n_train} training volumes"):
        check_config(config, schema)
    config["allocation"] = {"cells": [[3, 4]]}
    with pytest.raises(ConfigError, match=r"B=3, s=4: more volumes than slices"):
        check_config(config, schema)


def test_a_model_runs_its_own_subset_of_the_grid():
    study = {"cells": [[4, 2]], "selections": ["random", "fixed_interval", "ual"], "ual_allocations": ["equal", "free"],
             "interpolations": ["none", "shape_based", "morphological"], "models": ["2d", "3d"],
             "training_2d": {"epochs": 1}, "training_3d": {"selections": ["random", "ual"], "interpolations": ["none"]}}
    assert methods(study) == [("random", "equal"), ("fixed_interval", "equal"), ("ual", "equal"), ("ual", "free")]
    assert methods(study, "2d") == methods(study)  # no list of its own: the study's
    assert methods(study, "3d") == [("random", "equal"), ("ual", "equal"), ("ual", "free")]
    assert method_names(study, "3d") == ["random", "ual", "ual_free"]
    assert model_interpolations(study, "2d") == study["interpolations"]
    assert model_interpolations(study, "3d") == ["none"]
    assert config_errors(study) == []
    study["selections"] = ["fixed_interval", "ual"]
    study["training_3d"]["interpolations"] = ["morphological"]
    assert config_errors(study) == [
        "config: allocation.training_3d.selections: ['random'] not in allocation.selections "
        "['fixed_interval', 'ual'] (a model runs a subset of the study's selections)"]


def test_check_config_refuses_a_model_selection_outside_the_study():
    schema = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["allocation"]["selections"] = ["fixed_interval", "ual"]
    config["allocation"]["training_3d"]["selections"] = ["random"]
    with pytest.raises(ConfigError, match=r"allocation.training_3d.selections: \['random'\] not in"):
        check_config(config, schema)


def test_data_refuses_rho_above_a_volume_naming_it():
    lines = data_errors({"cells": [[12, 2], [30, 2], [9, 4]]}, {"SYN_1": 14, "SYN_2": 20, "SYN_3": 9, "SYN_4": 30})
    assert lines == ["allocation cell B=30, s=2: rho = 15 slices per volume is more than the 9 non-blank slices "
                     "of training volume SYN_3"]
    assert cells({"cells": [[8, 2], [4, 2]]}) == [(4, 2), (8, 2)]


# --- interpolation ------------------------------------------------------------------------------

def disc(radius: float, size: int = 64, centre=(32, 32)) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius ** 2


def two_discs(r1, r2, depth=9, value=1, size=64):
    labels = np.zeros((depth, size, size), np.uint8)
    labels[0][disc(r1, size)] = value
    labels[-1][disc(r2, size)] = value
    labels[1:-1] = 7  # unannotated slices hold anything: never read
    return labels


@pytest.mark.parametrize("r1, r2", [(6, 14), (20, 8), (5, 5)])
def test_shape_based_midway_disc_has_the_mean_radius(r1, r2):
    labels = two_discs(r1, r2)
    sets = region_sets({"fg": [1]}, [0, 1])
    out = shape_based(labels, [0, 8], sets, 2, (1.0, 1.0))
    mid = out[4] == 1
    radius = np.sqrt(mid.sum() / np.pi)
    assert abs(radius - (r1 + r2) / 2) <= 1.0
    assert mid[32, 32] and set(np.unique(out).tolist()) <= {0, 1}
    np.testing.assert_array_equal(out[[0, 8]], labels[[0, 8]])


def test_shape_based_keeps_nested_regions_nested_and_does_not_extrapolate():
    label_values = [0, 1, 2, 4]
    labels = np.zeros((12, 64, 64), np.uint8)
    for z, (rw, rt, re) in {2: (12, 8, 4), 7: (20, 6, 2), 10: (10, 9, 8)}.items():
        labels[z][disc(rw)] = 2  # edema
        labels[z][disc(rt)] = 1  # necrotic core
        labels[z][disc(re)] = 3  # enhancing (class of raw value 4)
    filled, labelled = fill_between(labels, [2, 7, 10], "shape_based", sets=region_sets(BRATS_REGIONS, label_values),
                                    n_classes=4, spacing_mm=(1.0, 1.0, 2.0))
    assert labelled.tolist() == [False, False] + [True] * 9 + [False]
    assert not filled[:2].any() and not filled[11].any()
    for z in range(2, 11):
        wt, tc, et = filled[z] > 0, np.isin(filled[z], [1, 3]), filled[z] == 3
        assert et.any() and tc.any() and wt.any()
        assert not (et & ~tc).any() and not (tc & ~wt).any()


def test_fill_between_none_labels_only_the_annotated_slices():
    labels = two_discs(4, 9, depth=6, size=32)
    filled, labelled = fill_between(labels, [0, 5], "none", sets=region_sets({"fg": [1]}, [0, 1]), n_classes=2,
                                    spacing_mm=(1, 1, 1))
    assert labelled.tolist() == [True, False, False, False, False, True]
    assert not filled[1:5].any()


@pytest.mark.parametrize("method", ["shape_based", "morphological"])
def test_fill_between_labels_only_gaps_with_foreground_on_both_sides(method):
    # annotated: 0 (disc), 4 (disc), 8 (empty), 12 (empty); the truth's disc goes on to slice 6
    labels = np.zeros((13, 32, 32), np.uint8)
    labels[0:7] = disc(6, size=32, centre=(16, 16))
    filled, labelled = fill_between(labels, [0, 4, 8, 12], method, sets=region_sets({"fg": [1]}, [0, 1]),
                                    n_classes=2, spacing_mm=(1, 1, 1))
    assert labelled.tolist() == [True] * 5 + [False] * 3 + [True] + [False] * 3 + [True]
    assert filled[1:4].all(axis=(1, 2)).sum() == 0 and filled[1:4].any(axis=(1, 2)).all()  # filled between discs
    assert not filled[5:8].any() and not filled[9:12].any()  # not claimed as background: unlabelled


def test_morphological_interpolation_between_discs():
    r1, r2 = 6, 14
    labels = two_discs(r1, r2, value=2)
    out = morphological(labels, [0, 8])
    assert set(np.unique(out).tolist()) <= {0, 2}  # only labels of the annotated slices
    np.testing.assert_array_equal(out[[0, 8]], labels[[0, 8]])
    area = (out[4] == 2).sum()
    assert disc(r1).sum() < area < disc(r2).sum()
    # ITK's filter ran in a child process, never beside torch (MONAI imports the lazy `itk` package only)
    assert "itk._MorphologicalContourInterpolationPython" not in sys.modules


def test_morphological_many_volumes_in_one_child():
    from slicepick.allocation.interpolation import morphological_many

    a, b = two_discs(6, 14, value=1), two_discs(12, 4, depth=5, value=3)
    out = morphological_many([(a, [0, 8], (2.0, 1.0, 1.0)), (b, [0, 4], (1.0, 1.0, 1.0))])
    assert [o.shape for o in out] == [a.shape, b.shape]
    np.testing.assert_array_equal(out[1][[0, 4]], b[[0, 4]])
    assert disc(4).sum() < (out[1][2] == 3).sum() < disc(12).sum()


def test_morphological_keeps_annotated_slices_and_their_labels_only():
    labels = np.zeros((10, 48, 48), np.uint8)
    labels[1][disc(8, 48, (24, 24))] = 1
    labels[1][disc(3, 48, (24, 24))] = 3
    labels[4] = 0  # annotated, no foreground: must stay empty and stop the bridging
    labels[8][disc(10, 48, (20, 26))] = 1
    labels[[0, 2, 3, 5, 6, 7, 9]] = 2  # unannotated content is never read
    filled, labelled = fill_between(labels, [1, 4, 8], "morphological", sets=region_sets(BRATS_REGIONS, [0, 1, 2, 4]),
                                    n_classes=4, spacing_mm=(1, 1, 1))
    np.testing.assert_array_equal(filled[[1, 4, 8]], labels[[1, 4, 8]])
    assert set(np.unique(filled).tolist()) <= {0, 1, 3}
    # both gaps have an empty end: only the annotated slices are labelled
    assert np.flatnonzero(labelled).tolist() == [1, 4, 8] and not filled[[2, 3, 5, 6, 7]].any()


# --- masked 3D loss -----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["dice", "dice_ce"])
def test_masked_loss_gives_exactly_zero_gradient_on_unannotated_slices(kind):
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 8, 8, 6, requires_grad=True)
    target = torch.randint(0, 3, (2, 1, 8, 8, 6))
    labelled = torch.tensor([1, 0, 0, 1, 0, 1], dtype=torch.float32)
    mask = labelled.view(1, 1, 1, 1, 6).expand(2, 1, 8, 8, 6)
    loss = masked_loss(logits, target, mask, kind)
    loss.backward()
    grad = logits.grad
    assert torch.all(grad[..., labelled == 0] == 0)
    assert grad[..., labelled == 1].abs().sum() > 0
    # and the loss does not see what the unannotated slices hold
    other = target.clone()
    other[..., labelled == 0] = (other[..., labelled == 0] + 1) % 3
    assert torch.equal(masked_loss(logits.detach(), other, mask, kind), loss.detach())


# --- nnU-Net export -----------------------------------------------------------------------------

def test_nnunet_export_follows_the_documented_format(tiny_store, tmp_path):
    from slicepick.allocation.nnunet import export_dataset, nnunet_labels

    train = tiny_store.case_ids("train")[:2]
    sizes = {c: len(tiny_store.case_samples(c)) for c in train}
    picked = select("fixed_interval", "equal", sizes, 5, seed=0)
    chosen = pd.DataFrame([(c, p) for c, ps in picked.items() for p in ps], columns=["case", "position"])
    folder = export_dataset(tiny_store, chosen, "none", tmp_path, dataset_id=501, name="tiny_test",
                            channel_names=tiny_store.meta["modalities"])
    assert folder.name == "Dataset501_tiny_test"
    ds = json.loads((folder / "dataset.json").read_text())
    assert ds["channel_names"] == {"0": "t1", "1": "t1ce", "2": "t2", "3": "flair"}
    assert ds["file_ending"] == ".nii.gz" and ds["numTraining"] == 2
    labels = ds["labels"]
    assert labels["background"] == 0
    assert labels["ignore"] == 4 and list(labels)[-1] == "ignore"
    flat = [v for k, v in labels.items() if k != "ignore" for v in (v if isinstance(v, list) else [v])]
    assert labels["ignore"] > max(flat)
    # BraTS regions: WT, TC, ET as nnU-Net regions of our classes (1 NCR, 2 ED, 3 ET)
    assert labels["WT"] == [1, 2, 3] and labels["TC"] == [1, 3] and labels["ET"] == [3]
    assert ds["regions_class_order"] == [2, 1, 3]
    assert nnunet_labels({"label_values": [0, 1, 2], "regions": {"liver": [1], "tumour": [2]}}) == \
        ({"background": 0, "liver": 1, "tumour": 2}, None)
    assert sorted(p.name for p in (folder / "labelsTr").iterdir()) == [f"{c}.nii.gz" for c in sorted(train)]
    assert len(list((folder / "imagesTr").iterdir())) == 2 * 4
    for case in train:
        for ch in range(4):
            assert (folder / "imagesTr" / f"{case}_{ch:04d}.nii.gz").exists()
        lab = np.asarray(nib.load(folder / "labelsTr" / f"{case}.nii.gz").dataobj)
        ref = np.moveaxis(np.array(tiny_store.labels[tiny_store.case_samples(case)]), 0, -1)
        assert lab.shape == ref.shape and lab.dtype == np.uint8
        annotated = picked[case]
        np.testing.assert_array_equal(lab[..., annotated], ref[..., annotated])
        others = np.setdiff1d(np.arange(lab.shape[-1]), annotated)
        assert np.all(lab[..., others] == 4)
        assert nib.load(folder / "imagesTr" / f"{case}_0000.nii.gz").shape == lab.shape
    tests = tiny_store.case_ids("test")
    assert sorted(p.name for p in (folder / "labelsTs").iterdir()) == [f"{c}.nii.gz" for c in tests]
    assert len(list((folder / "imagesTs").iterdir())) == 4 * len(tests)
    splits = json.loads((folder / "splits_final.json").read_text())
    assert splits == [{"train": sorted(train), "val": sorted(train)}]


# --- planning on a real store -------------------------------------------------------------------

def test_plan_pairs_the_volumes_of_every_method(tiny_store, tmp_path):
    from slicepick.allocation.experiment import AllocationError, plan_selections

    cfg = {"cells": [[4, 2], [6, 3]], "selections": ["random", "fixed_interval", "ual"],
           "ual_allocations": ["equal", "free"], "ual_grid": 4}
    plan = plan_selections(tiny_store.folder, tmp_path / "sel.csv", alloc_cfg=cfg, seeds=[0, 1])
    for (b, s, seed, sel, alloc), rows in plan.groupby(["budget", "n_volumes", "seed", "selection", "allocation"]):
        assert len(rows) == b and rows.sample_id.is_unique
        assert set(rows.case) <= set(tiny_store.case_ids("train"))
    equal = plan[plan.allocation == "equal"].groupby(["budget", "n_volumes", "seed", "selection"]).case.apply(frozenset)
    for (b, s, seed), sets in equal.groupby(level=[0, 1, 2]):
        assert len(set(sets)) == 1 and len(next(iter(sets))) == s
    with pytest.raises(AllocationError, match="B=90, s=2: rho = 45"):
        plan_selections(tiny_store.folder, tmp_path / "bad.csv", alloc_cfg={**cfg, "cells": [[90, 2]]}, seeds=[0])
    assert not (tmp_path / "bad.csv").exists()


def test_missing_itk_fails_in_one_line_saying_how_to_install(monkeypatch):
    from importlib import metadata

    from slicepick.allocation import interpolation
    from slicepick.allocation.interpolation import ITK_PIN, MissingDependency, require_itk

    def not_installed(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(interpolation.metadata, "version", not_installed)
    with pytest.raises(MissingDependency) as err:
        require_itk()
    assert str(err.value).count("\n") == 0 and f"pip install {ITK_PIN}" in str(err.value)
    with pytest.raises(MissingDependency):
        morphological(two_discs(3, 6, size=16), [0, 8])


# --- tables -------------------------------------------------------------------------------------

def synthetic_metrics():
    """Two budgets, three s, two selections, two interpolations, 6 test cases, 2 seeds, 1 region:
    Dice grows with s, fixed_interval is 0.05 better than random, interpolation changes nothing."""
    rows = []
    for budget in (12, 24):
        for s in (2, 4, 6):
            for sel in ("random", "fixed_interval"):
                for interp in ("none", "shape_based"):
                    for seed in (0, 1):
                        for i in range(6):
                            dice = 0.3 + 0.05 * s + 0.01 * i + (0.05 if sel == "fixed_interval" else 0) + 0.001 * seed
                            rows.append({"dataset": "t", "model": "2d", "budget": budget, "n_volumes": s,
                                         "slices_per_volume": budget / s, "selection": sel, "allocation": "equal",
                                         "interpolation": interp, "seed": seed, "case": f"c{i}", "region": "WT",
                                         "dice": dice, "hd95": 1.0, "degenerate": False})
    return pd.DataFrame(rows)


def test_tables_pair_over_cases_and_correct_with_holm(tmp_path):
    from slicepick.allocation import report

    metrics = synthetic_metrics()
    sel = report.selection_table(metrics)
    assert len(sel) == 6 and (sel.n_cases == 6).all() and set(sel.method_a) == {"random"}
    assert np.allclose(sel.p_value, 0.03125)  # 6 of 6 cases differ in one direction: the smallest two-sided p
    assert np.allclose(sel.p_holm, np.minimum(1, 0.03125 * 6))
    interp = report.interpolation_table(metrics)
    assert len(interp) == 12 and (interp.p_value == 1.0).all()  # identical values: no evidence
    assert set(interp.interpolation_a) == {"none"}
    alloc = report.allocation_table(metrics)
    assert set(alloc.best_s) == {6} and sorted(alloc.other_s.tolist()) == [2, 2, 4, 4]
    report.write_table(sel, "selection", tmp_path / "s.csv", tmp_path / "s.md", tmp_path / "s.tex")
    assert "Holm" in (tmp_path / "s.md").read_text() and r"\begin{table}" in (tmp_path / "s.tex").read_text()
    report.heatmap(metrics, "2d", "random", tmp_path / "h.png", tmp_path / "h.pdf")
    report.dice_vs_volumes(metrics, "2d", tmp_path / "d.png", tmp_path / "d.pdf")
    assert (tmp_path / "h.png").stat().st_size > 0 and (tmp_path / "d.pdf").stat().st_size > 0


def test_degenerate_models_are_marked_in_tables_and_heat_maps(tmp_path):
    from slicepick.allocation import report

    metrics = synthetic_metrics()
    metrics.loc[(metrics.seed == 1) & (metrics.selection == "fixed_interval") & (metrics.n_volumes == 2), "degenerate"] = True
    sel = report.selection_table(metrics)
    marked = sel[sel.dice_b.str.endswith("†1")]
    assert len(marked) == 2 and set(marked.n_volumes) == {2}  # both budgets at s = 2; one of two seeds
    assert not sel.dice_a.str.contains("†").any()
    report.write_table(sel, "selection", tmp_path / "s.csv", tmp_path / "s.md", tmp_path / "s.tex")
    assert "†k: k of the seeds' models are degenerate" in (tmp_path / "s.md").read_text()
    report.heatmap(metrics, "2d", "fixed_interval", tmp_path / "h.png", tmp_path / "h.pdf")
    assert (tmp_path / "h.png").stat().st_size > 0


def test_3d_patches_and_sliding_window_keep_shapes_and_learn_only_from_labelled_slices():
    from slicepick.allocation.volume3d import build_unet3d, predict_volume, train_volumes

    rng = np.random.default_rng(0)
    labelled = np.zeros(20, bool)
    labelled[[3, 11]] = True
    volumes = [{"image": rng.normal(size=(2, 48, 48, 20)).astype(np.float32),
                "label": rng.integers(0, 3, size=(48, 48, 20)).astype(np.uint8), "labelled": labelled}]
    cfg = {"epochs": 1, "min_steps": 3, "batch_size": 1, "lr": 1e-3, "patch_size": [32, 32, 32],
           "augment": {"enabled": True}}
    a = build_unet3d(2, 3, [2, 2, 4, 4, 8, 2], seed=5)
    b = build_unet3d(2, 3, [2, 2, 4, 4, 8, 2], seed=5)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    history = train_volumes(a, volumes, cfg, seed=1, device="cpu")
    assert len(history) == 3 and all(np.isfinite(h["loss"]) for h in history)
    pred = predict_volume(a, volumes[0]["image"], "cpu", patch_size=[32, 32, 32])
    assert pred.shape == (48, 48, 20) and pred.dtype == np.uint8 and pred.max() < 3
    # what unlabelled slices hold does not change training at all
    other = [{**volumes[0], "label": np.where(labelled[None, None, :], volumes[0]["label"], 0).astype(np.uint8)}]
    train_volumes(b, other, cfg, seed=1, device="cpu")
    assert all(torch.allclose(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def _seen_by_the_loss(monkeypatch, volumes, cfg):
    """(image, label, mask) of every step of ``train_volumes``, as the masked loss receives them."""
    from slicepick.allocation import volume3d

    seen, loss = [], volume3d.masked_loss
    monkeypatch.setattr(volume3d, "masked_loss", lambda logits, y, m, kind="dice": (
        seen.append((y.numpy().copy(), m.numpy().copy())), loss(logits, y, m, kind))[1])
    model = volume3d.build_unet3d(volumes[0]["image"].shape[0], 3, [2, 2, 4, 4, 8, 2], seed=0)
    volume3d.train_volumes(model, volumes, {"batch_size": 1, "lr": 1e-3, **cfg}, seed=0, device="cpu")
    return seen


def _sparse_volume(z=20, labelled=(3, 9, 15), size=32):
    rng = np.random.default_rng(0)
    mask = np.zeros(z, bool)
    mask[list(labelled)] = True
    return {"image": rng.normal(size=(1, size, size, z)).astype(np.float32),
            "label": rng.integers(0, 3, size=(size, size, z)).astype(np.uint8), "labelled": mask}


def test_3d_training_moves_the_labelled_slices_to_random_depths(monkeypatch):
    # With the labelled slices at fixed depths a 3D U-Net learned where they were and flooded the
    # others with tumour (README). Each step rolls volume, labels and mask together.
    from slicepick.allocation.volume3d import pad_depth

    volume = _sparse_volume()
    seen = _seen_by_the_loss(monkeypatch, [volume], {"epochs": 12})
    label = pad_depth(volume["label"][None].astype(np.float32), 32)
    depths = set()
    mask = pad_depth(volume["labelled"], 32)
    for y, m in seen:
        shifts = [k for k in range(32) if np.array_equal(np.roll(mask, k), m[0, 0, 0, 0] > 0)]
        assert len(shifts) == 1  # the mask moved whole
        assert np.array_equal(y[0], np.roll(label, shifts[0], axis=-1))  # and the labels with it
        depths.add(shifts[0])
    assert len(depths) >= 6
    fixed = _seen_by_the_loss(monkeypatch, [volume], {"epochs": 3, "z_shift": False})
    assert all(list(np.flatnonzero(m[0, 0, 0, 0])) == [3, 9, 15] for _, m in fixed)


def test_3d_patches_do_not_centre_the_labelled_slice(monkeypatch):
    volume = _sparse_volume(z=40, labelled=(20,))
    seen = _seen_by_the_loss(monkeypatch, [volume], {"epochs": 12, "patch_size": [32, 32, 16]})
    where = {int(np.flatnonzero(m[0, 0, 0, 0])[0]) for _, m in seen if m.any()}
    assert all(m.shape[-1] == 16 for _, m in seen) and len(where) >= 4
    centred = _seen_by_the_loss(monkeypatch, [volume], {"epochs": 4, "patch_size": [32, 32, 16], "z_shift": False})
    assert {int(np.flatnonzero(m[0, 0, 0, 0])[0]) for _, m in centred} == {8}  # MONAI's crop alone: the middle


def test_3d_training_pads_each_volume_as_inference_does():
    # Padding every volume to the deepest one put up to 40% zero slices into the instance norm's
    # statistics in training but not at inference: the model flooded the test volumes with tumour.
    from slicepick.allocation.volume3d import build_unet3d, predict_volume, train_volumes

    rng = np.random.default_rng(0)
    volumes = [{"image": rng.normal(size=(2, 32, 32, z)).astype(np.float32),
                "label": rng.integers(0, 3, size=(32, 32, z)).astype(np.uint8), "labelled": np.ones(z, bool)}
               for z in (20, 40)]
    model = build_unet3d(2, 3, [2, 2, 4, 4, 8, 2], seed=0)
    seen = []
    model.register_forward_hook(lambda module, args, out: seen.append(tuple(args[0].shape)))
    train_volumes(model, volumes, {"epochs": 1, "batch_size": 1, "lr": 1e-3, "lr_schedule": "cosine"}, seed=0,
                  device="cpu")
    assert sorted(s[-1] for s in seen) == [32, 48]
    seen.clear()
    # with batches of two: never both at 48; volumes of one depth share a batch (one forward pass)
    train_volumes(model, volumes, {"epochs": 1, "batch_size": 2, "lr": 1e-3}, seed=0, device="cpu")
    assert sorted(s[-1] for s in seen) == [32, 48] and all(s[0] == 1 for s in seen)
    seen.clear()
    train_volumes(model, volumes + volumes[:1], {"epochs": 2, "batch_size": 2, "lr": 1e-3}, seed=0, device="cpu")
    assert sorted((s[0], s[-1]) for s in seen) == [(1, 48), (1, 48), (2, 32), (2, 32)]
    seen.clear()
    predict_volume(model, volumes[0]["image"], "cpu")
    assert seen[0][-1] == 32
