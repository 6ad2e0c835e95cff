"""Validation: every kind of bad input gives `case <id>: <file>: <reason>` and nothing is written."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml

import slicepick.data.prepare as prepare_module
from slicepick.data.prepare import SliceStore, prepare_dataset
from slicepick.data.readers import DatasetError, find_cases
from slicepick.data.synthetic import generate_dataset

MODALITIES = ["t1", "t1ce", "t2", "flair"]
LABELS = {"label_values": [0, 1, 2, 4], "regions": {"WT": [1, 2, 4], "TC": [1, 4], "ET": [4]}}
SHAPE = (20, 20, 12)
AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])


def run_prepare(data: Path, out: Path, on_bad_case: str = "fail"):
    cases = find_cases("brats", data, {"modalities": MODALITIES})
    return prepare_dataset(cases, out, modalities=MODALITIES, **LABELS, test_fraction=0.34, split_seed=0,
                           on_bad_case=on_bad_case)


def case_file(data: Path, case: str, suffix: str) -> Path:
    return data / case / f"{case}_{suffix}.nii.gz"


def rewrite(path: Path, array, affine=AFFINE) -> None:
    nib.save(nib.Nifti1Image(np.asarray(array), affine), path)


def voxels(path: Path) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj)


@pytest.fixture
def data(tmp_path) -> Path:
    generate_dataset(tmp_path / "data", 3, shape=SHAPE, seed=0)
    return tmp_path / "data"


def _unreadable(data):
    case_file(data, "SYN_001", "t2").write_bytes(b"not a nifti file" * 8)
    return "t2", r"unreadable \(.+\)"


def _truncated(data):
    path = case_file(data, "SYN_001", "t2")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return "t2", r"unreadable or truncated \(EOFError: .+\)"


def _label_shape(data):
    rewrite(case_file(data, "SYN_001", "seg"), np.zeros((20, 20, 11), np.uint8))
    return "seg", r"label shape \(20, 20, 11\) differs from \(20, 20, 12\) of SYN_001_t1.nii.gz"


def _image_shape(data):
    rewrite(case_file(data, "SYN_001", "flair"), np.ones((18, 20, 12), np.float32))
    return "flair", r"image \(flair\) shape \(18, 20, 12\) differs from \(20, 20, 12\) of SYN_001_t1.nii.gz"


def _label_affine(data):
    path = case_file(data, "SYN_001", "seg")
    shifted = AFFINE.copy()
    shifted[0, 3] = 1.0
    rewrite(path, voxels(path), shifted)
    return "seg", r"label affine differs from that of SYN_001_t1.nii.gz \(by up to 1 mm\)"


def _missing_modality(data):
    case_file(data, "SYN_001", "t1ce").unlink()
    return "t1ce", r"missing modality 't1ce'"


def _missing_label(data):
    case_file(data, "SYN_001", "seg").unlink()
    return "seg", r"label file missing"


def _two_d(data):
    rewrite(case_file(data, "SYN_001", "t1"), np.ones((20, 20), np.float32))
    return "t1", r"expected a 3D volume, got 2D shape \(20, 20\)"


def _four_d(data):
    rewrite(case_file(data, "SYN_001", "t1"), np.ones((20, 20, 12, 2), np.float32))
    return "t1", r"expected a 3D volume, got 4D shape \(20, 20, 12, 2\)"


def _nan(data):
    path = case_file(data, "SYN_001", "t2")
    array = voxels(path).astype(np.float32)
    array[3, 4, 5] = np.nan
    array[4, 4, 5] = np.nan
    rewrite(path, array)
    return "t2", r"2 NaN and 0 Inf voxels"


def _inf(data):
    path = case_file(data, "SYN_001", "t2")
    array = voxels(path).astype(np.float32)
    array[3, 4, 5] = -np.inf
    rewrite(path, array)
    return "t2", r"0 NaN and 1 Inf voxels"


def _all_zero(data):
    rewrite(case_file(data, "SYN_001", "flair"), np.zeros(SHAPE, np.float32))
    return "flair", r"all-zero image"


def _label_outside_set(data):
    path = case_file(data, "SYN_001", "seg")
    label = voxels(path).copy()
    label[0, 0, 0], label[0, 0, 1] = 3, 7
    rewrite(path, label)
    return "seg", r"label values \[3, 7\] not in the declared set \[0, 1, 2, 4\]"


def _label_not_integer(data):
    path = case_file(data, "SYN_001", "seg")
    label = voxels(path).astype(np.float32)
    label[0, 0, 0] = 0.5
    rewrite(path, label)
    return "seg", r"label map has non-integer values"


BAD_INPUTS = [_unreadable, _truncated, _label_shape, _image_shape, _label_affine, _missing_modality, _missing_label,
              _two_d, _four_d, _nan, _inf, _all_zero, _label_outside_set, _label_not_integer]


@pytest.mark.parametrize("corrupt", BAD_INPUTS, ids=[f.__name__.strip("_") for f in BAD_INPUTS])
def test_bad_input_is_reported_and_nothing_is_written(data, tmp_path, corrupt):
    suffix, reason = corrupt(data)
    results = tmp_path / "results"
    with pytest.raises(DatasetError) as err:
        run_prepare(data, results / "prepared")
    lines = str(err.value).splitlines()
    expected = f"case SYN_001: {re.escape(str(case_file(data, 'SYN_001', suffix)))}: {reason}"
    assert re.fullmatch(expected, lines[0]), lines
    assert lines[-1].startswith("1 of 3 cases failed validation; nothing was written")
    assert len(lines) == 2
    assert not results.exists()


def test_duplicate_case_ids(tmp_path):
    data = tmp_path / "data"
    generate_dataset(data / "HGG", 2, shape=SHAPE, seed=0)
    generate_dataset(data / "LGG", 2, shape=SHAPE, seed=1)  # SYN_000 and SYN_001 again
    with pytest.raises(DatasetError) as err:
        run_prepare(data, tmp_path / "results" / "prepared")
    lines = str(err.value).splitlines()
    for grade in ("HGG", "LGG"):
        for case in ("SYN_000", "SYN_001"):
            assert f"case {case}: {data / grade / case}: duplicate case id (2 cases are named {case})" in lines
    assert not (tmp_path / "results").exists()


def test_empty_dataset(tmp_path):
    (tmp_path / "data").mkdir()
    with pytest.raises(DatasetError, match=r"data_root .*data: empty dataset, no case folders found"):
        run_prepare(tmp_path / "data", tmp_path / "results" / "prepared")
    with pytest.raises(DatasetError, match="empty dataset: no cases found"):
        prepare_dataset([], tmp_path / "results" / "prepared", modalities=MODALITIES, **LABELS, test_fraction=0.3,
                        split_seed=0)
    assert not (tmp_path / "results").exists()


def test_every_bad_case_is_reported_in_one_pass(tmp_path):
    data = tmp_path / "data"
    generate_dataset(data, 6, shape=SHAPE, seed=0)
    _missing_modality(data)  # SYN_001
    rewrite(case_file(data, "SYN_003", "t1"), np.ones((20, 20), np.float32))
    rewrite(case_file(data, "SYN_004", "flair"), np.zeros(SHAPE, np.float32))
    path = case_file(data, "SYN_004", "seg")
    rewrite(path, np.full(SHAPE, 9, np.uint8))
    with pytest.raises(DatasetError) as err:
        run_prepare(data, tmp_path / "results" / "prepared")
    lines = str(err.value).splitlines()
    assert [line.split(":")[0] for line in lines[:-1]] == ["case SYN_001", "case SYN_003", "case SYN_004", "case SYN_004"]
    assert lines[2].endswith("all-zero image") and lines[3].endswith("label values [9] not in the declared set [0, 1, 2, 4]")
    assert lines[-1].startswith("3 of 6 cases failed validation")
    assert not (tmp_path / "results").exists()


def test_skip_leaves_bad_cases_out_and_lists_them(tmp_path):
    data = tmp_path / "data"
    generate_dataset(data, 5, shape=SHAPE, seed=0)
    _missing_modality(data)
    zero_t2 = case_file(data, "SYN_003", "t2")
    rewrite(zero_t2, np.zeros(SHAPE, np.float32))
    out = tmp_path / "results" / "prepared"
    problems = run_prepare(data, out, on_bad_case="skip")
    assert [p.case_id for p in problems] == ["SYN_001", "SYN_003"]
    store = SliceStore(out)
    assert sorted(store.meta["cases"]) == ["SYN_000", "SYN_002", "SYN_004"]
    report = pd.read_csv(out / "bad_cases.csv")
    assert report.to_dict("records") == [
        {"case": "SYN_001", "file": str(case_file(data, "SYN_001", "t1ce")), "reason": "missing modality 't1ce'"},
        {"case": "SYN_003", "file": str(zero_t2), "reason": "all-zero image"},
    ]


def test_skip_needs_two_good_cases(tmp_path):
    data = tmp_path / "data"
    generate_dataset(data, 2, shape=SHAPE, seed=0)
    _missing_label(data)
    with pytest.raises(DatasetError, match="1 good case\\(s\\) of 2: need at least 2 for a train/test split"):
        run_prepare(data, tmp_path / "results" / "prepared", on_bad_case="skip")
    assert not (tmp_path / "results").exists()


def test_a_file_broken_after_validation_leaves_no_partial_store(tmp_path, monkeypatch):
    """A case that breaks while the store is written (changed after validation) leaves nothing behind."""
    data = tmp_path / "data"
    generate_dataset(data, 3, shape=SHAPE, seed=0)
    cases = find_cases("brats", data, {"modalities": MODALITIES})
    real_load = prepare_module.load_case

    def load_then_break(case):
        if case.case_id == "SYN_002":
            shutil.rmtree(data / "SYN_002")
        return real_load(case)

    monkeypatch.setattr(prepare_module, "load_case", load_then_break)
    with pytest.raises(DatasetError, match=r"case SYN_002: .*SYN_002_t1.nii.gz: unreadable"):
        prepare_dataset(cases, tmp_path / "results" / "prepared", modalities=MODALITIES, **LABELS,
                        test_fraction=0.34, split_seed=0)
    assert list((tmp_path / "results").iterdir()) == []


# ----------------------------------------------------------------------- the `prepare` target, for real

REPO = Path(__file__).resolve().parents[1]


def snakemake_prepare(tmp_path: Path, data: Path, on_bad_case: str = "fail", cwd=None) -> subprocess.CompletedProcess:
    """`snakemake prepare` (validation and preparation only) on config_tiny.yaml with a BraTS dataset."""
    cfg = yaml.safe_load((REPO / "workflow_tests" / "config_tiny.yaml").read_text())
    cfg["dataset"] = {"name": "checked", "layout": "brats", "modalities": MODALITIES, **LABELS,
                      "test_fraction": 0.34, "on_bad_case": on_bad_case}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "snakemake", "prepare", "--cores", "2", "--directory",
                           str(tmp_path / "run"), "--snakefile", str(REPO / "Snakefile"), "--configfile", str(config),
                           "--config", f"data_root={data}"], capture_output=True, text=True, env=env, timeout=600,
                          cwd=cwd)


@pytest.mark.slow
def test_prepare_target_stops_on_bad_cases_with_every_line(data, tmp_path):
    _missing_modality(data)  # SYN_001
    rewrite(case_file(data, "SYN_002", "seg"), np.full(SHAPE, 3, np.uint8))
    run = snakemake_prepare(tmp_path, data)
    assert run.returncode != 0
    lines = [f"case SYN_001: {case_file(data, 'SYN_001', 't1ce')}: missing modality 't1ce'",
             f"case SYN_002: {case_file(data, 'SYN_002', 'seg')}: label values [3] not in the declared set [0, 1, 2, 4]",
             "2 of 3 cases failed validation; nothing was written"]
    log = (tmp_path / "run" / "logs" / "checked" / "prepare.log").read_text()
    for line in lines:
        assert line in run.stderr and line in log


@pytest.mark.slow
def test_refused_dataset_names_every_bad_case_in_snakemakes_error_report(tmp_path):
    """The job's own stderr may not reach the terminal (a cluster job's goes to its SLURM log): the
    workflow profile (profiles/default, found beside the Snakefile from any folder) has Snakemake
    print the failed job's log under its error report."""
    data = tmp_path / "data"
    generate_dataset(data, 4, shape=SHAPE, seed=0)
    _missing_modality(data)  # SYN_001
    rewrite(case_file(data, "SYN_003", "seg"), np.full(SHAPE, 3, np.uint8))
    run = snakemake_prepare(tmp_path, data, cwd=tmp_path)
    assert run.returncode != 0
    terminal = run.stdout + run.stderr
    assert "workflow specific profile" in terminal, terminal[-3000:]
    report = terminal[terminal.index("Error in rule prepare"):]
    assert "prepare.log:" in report, report
    for line in [f"case SYN_001: {case_file(data, 'SYN_001', 't1ce')}: missing modality 't1ce'",
                 f"case SYN_003: {case_file(data, 'SYN_003', 'seg')}: label values [3] not in the declared set [0, 1, 2, 4]",
                 "2 of 4 cases failed validation; nothing was written"]:
        assert line in report, report
    results = tmp_path / "run" / "results"
    assert not results.exists() or not any(p.is_file() for p in results.rglob("*"))


@pytest.mark.slow
def test_prepare_target_prepares_only(data, tmp_path):
    _all_zero(data)
    run = snakemake_prepare(tmp_path, data, on_bad_case="skip")
    assert run.returncode == 0, run.stderr[-3000:]
    dataset = tmp_path / "run" / "results" / "checked"
    # the store and Snakemake's benchmark file of the prepare job, nothing else
    assert sorted(p.name for p in dataset.iterdir()) == ["benchmarks", "prepared"]
    assert [p.name for p in (dataset / "benchmarks").iterdir()] == ["prepare.tsv"]
    assert sorted(SliceStore(dataset / "prepared").meta["cases"]) == ["SYN_000", "SYN_002"]
    assert "skipping bad case: case SYN_001" in (tmp_path / "run" / "logs" / "checked" / "prepare.log").read_text()
