"""Annotate mode's parts without the workflow: the fixed-interval plan, the viewer orientation of the
contact sheet, the annotation checks and the config checks."""
import nibabel as nib
import numpy as np
import pytest
import yaml

from conftest import REPO
from slicepick.annotate import AnnotationLabels, display_view, fixed_interval
from slicepick.annotation_state import AnnotationError, annotated_slices, annotations_hash, read_annotation
from slicepick.config import ConfigError, check_config

SCHEMA = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
FREE = {"a": np.arange(3, 17), "b": np.arange(0, 20), "c": np.arange(5, 9), "d": np.arange(2, 12)}


@pytest.mark.parametrize("budget", [1, 5, 9, 12, 40])
def test_fixed_interval_meets_the_budget_exactly(budget):
    picks = fixed_interval(FREE, budget, rng=np.random.default_rng(0))
    assert len(picks) == budget == len(set(picks))
    assert all(s in FREE[c] for c, s in picks)
    # as many volumes as the budget allows at 3 slices each (more only when they cannot hold it)
    assert len({c for c, _ in picks}) >= min(len(FREE), max(1, budget // 3))


def test_fixed_interval_spaces_slices_equally_and_is_seeded():
    picks = fixed_interval({"a": np.arange(10, 30)}, 4, rng=np.random.default_rng(1))
    slices = [s for _, s in picks]
    assert np.all(np.diff(slices) == 5) and 10 <= slices[0] <= 15
    assert picks == fixed_interval({"a": np.arange(10, 30)}, 4, rng=np.random.default_rng(1))
    with pytest.raises(ValueError, match="exceeds the 48 non-blank"):
        fixed_interval(FREE, 49, rng=np.random.default_rng(0))


def test_fixed_interval_with_given_volume_count():
    picks = fixed_interval(FREE, 12, rng=np.random.default_rng(0), n_volumes=2)
    counts = {c: sum(1 for p in picks if p[0] == c) for c in {p[0] for p in picks}}
    assert sum(counts.values()) == 12 and len(counts) >= 2  # more volumes only when two cannot hold 12


def test_display_view_is_the_same_picture_for_ras_and_lps_storage():
    """The same anatomy stored RAS or LPS shows the same picture (patient left on the right, anterior up)."""
    rng = np.random.default_rng(0)
    ras = rng.standard_normal((6, 5, 4))
    lps = ras[::-1, ::-1, :]
    ras_affine, lps_affine = np.diag([2.0, 2, 2, 1]), np.diag([-2.0, -2, 2, 1])
    for z in range(4):
        assert np.array_equal(display_view(ras[..., z], ras_affine, 2), display_view(lps[..., z], lps_affine, 2))
    view = display_view(ras[..., 0], ras_affine, 2)
    assert view.shape == (5, 6) and view[0, -1] == ras[0, -1, 0]  # top right: most anterior, most left


def test_annotation_checks_name_the_file(tmp_path):
    affine = np.diag([-2.0, -2, 2, 1])
    label = np.full((8, 8, 5), 255, np.uint8)
    label[..., 1] = 0
    label[2:4, 2:4, 1] = 2
    path = tmp_path / "c1.nii.gz"
    nib.save(nib.Nifti1Image(label, affine.astype(np.float32)), path)
    data = read_annotation(path, (8, 8, 5), affine + 1e-6, [0, 1, 2], 255)
    assert annotated_slices(data, 2, 255).tolist() == [1]
    with pytest.raises(AnnotationError, match=r"c1.nii.gz: shape \(8, 8, 5\) differs"):
        read_annotation(path, (8, 8, 6), affine, [0, 1, 2], 255)
    with pytest.raises(AnnotationError, match="c1.nii.gz: affine differs"):
        read_annotation(path, (8, 8, 5), affine + np.diag([0, 0, 0.01, 0]), [0, 1, 2], 255)
    with pytest.raises(AnnotationError, match=r"c1.nii.gz: values \[2\] are neither label values"):
        read_annotation(path, (8, 8, 5), affine, [0, 1], 255)
    (tmp_path / "c2.nii.gz").write_bytes(b"not a nifti")
    with pytest.raises(AnnotationError, match="c2.nii.gz: unreadable"):
        read_annotation(tmp_path / "c2.nii.gz", (8, 8, 5), affine, [0, 1, 2], 255)
    before = annotations_hash({"c1": path})
    nib.save(nib.Nifti1Image(np.where(label == 255, 0, label).astype(np.uint8), affine), path)
    assert annotations_hash({"c1": path}) != before


def test_labels_of_unannotated_samples_are_never_given():
    labels = AnnotationLabels((5, 4, 4), {1: np.ones((4, 4), np.uint8), 3: np.zeros((4, 4), np.uint8)})
    assert labels[np.array([3, 1])].shape == (2, 4, 4) and labels[1].sum() == 16
    with pytest.raises(KeyError, match="sample 2 is not annotated"):
        labels[np.array([1, 2])]


def _annotate_config(**annotate):
    cfg = yaml.safe_load((REPO / "config" / "annotate.yaml").read_text())
    cfg["annotate"].update(annotate)
    return cfg


def test_annotate_config_is_valid_and_refuses_methods_that_need_ground_truth():
    check_config(_annotate_config(), SCHEMA)
    for method in ("oracle", "full"):
        with pytest.raises(ConfigError, match=f"annotate.method: '{method}' needs the ground truth"):
            check_config(_annotate_config(method=method), SCHEMA)
    with pytest.raises(ConfigError, match="annotate.ignore_value: 1 is a label value"):
        check_config(_annotate_config(ignore_value=1), SCHEMA)
    with pytest.raises(ConfigError, match="annotate.method: unknown method 'gsg'"):
        check_config(_annotate_config(method="gsg"), SCHEMA)


def test_annotate_store_keeps_the_files_voxel_order_and_reads_msd_images_without_labels(tmp_path):
    """An MSD folder with imagesTr/ only; the store's (case, z) along axis 0 is the file's own slice."""
    import json

    from slicepick.annotate import prepare_annotate_store
    from slicepick.annotation_state import annotate_cases
    from slicepick.data.prepare import SliceStore, zscore_in_mask

    root = tmp_path / "msd"
    (root / "imagesTr").mkdir(parents=True)
    desc = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "organ": 1}, "file_ending": ".nii.gz"}
    (root / "dataset.json").write_text(json.dumps(desc))
    rng = np.random.default_rng(0)
    volumes = {}
    for cid in ("p1", "p2"):
        vol = np.zeros((7, 20, 18), np.float32)
        vol[1:6, 3:17, 2:15] = rng.uniform(1, 5, (5, 14, 13))  # slices 0 and 6 along axis 0 are blank
        nib.save(nib.Nifti1Image(vol, np.diag([-1.5, -1.0, 3.0, 1])), root / "imagesTr" / f"{cid}_0000.nii.gz")
        volumes[cid] = vol
    cases = annotate_cases(root, {"layout": "msd"})
    assert [c.case_id for c in cases] == ["p1", "p2"] and all(c.label is None for c in cases)
    prepare_annotate_store(root, {"layout": "msd"}, 0, tmp_path / "store")
    store = SliceStore(tmp_path / "store")
    assert store.meta["axis"] == 0 and store.meta["raw_label_values"] == [0, 1]
    assert store.images.shape == (10, 1, 32, 32) and sorted(store.index.z.unique()) == [1, 2, 3, 4, 5]
    for sid, case, z in zip(store.index.sample_id, store.index.case, store.index.z):
        (px, _), (py, _) = store.meta["cases"][case]["pad"]
        expected = zscore_in_mask(volumes[case])[z]
        assert np.allclose(store.images[sid, 0, px:px + 20, py:py + 18], expected, atol=1e-5)
    assert not store.labels.any()
