"""Readers of each layout: small datasets written on the spot, prepared into a slice store."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml

from slicepick.data.prepare import SliceStore, prepare_from_config
from slicepick.data.readers import DatasetError, find_cases, load_case
from slicepick.data.synthetic import generate_dataset, synthesize_case
from slicepick.seeding import rng_for

BRATS_MODALITIES = ["t1", "t1ce", "t2", "flair"]
BRATS_LABELS = {"label_values": [0, 1, 2, 4], "regions": {"WT": [1, 2, 4], "TC": [1, 4], "ET": [4]}}
SHAPE = (24, 24, 16)
AFFINE = np.diag([1.5, 1.5, 2.0, 1.0])


def save(array, path: Path, affine=AFFINE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(array), affine), path)


def stored_labels(store: SliceStore, case: str) -> np.ndarray:
    """A case's stored class map as (X, Y, Z'), padding removed (Z' the non-blank slices)."""
    (px0, px1), (py0, py1) = store.meta["cases"][case]["pad"]
    h, w = store.meta["cases"][case]["padded_hw"]
    return np.moveaxis(np.array(store.labels[store.case_samples(case)]), 0, -1)[px0:h - px1, py0:w - py1]


def snapshot(folder: Path) -> dict:
    """Every path under folder with its size and modification time: equal snapshots, nothing written."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


def make_read_only(folder: Path) -> None:
    for p in [*folder.rglob("*"), folder]:
        p.chmod(0o555 if p.is_dir() else 0o444)


def prepare(layout, data_root, out_dir, **dataset):
    """Prepare as the prepare job does, from a dataset config block (the schema's defaults here)."""
    block = {"name": "test", "layout": layout, "test_fraction": 0.34, "split_seed": 0, "resize": None,
             "on_bad_case": "fail", **dataset}
    prepare_from_config(data_root, block, out_dir)
    return SliceStore(out_dir)


def write_brats2023(root: Path, n_cases: int) -> list[str]:
    """BraTS 2023 names (<case>-t1n.nii.gz ...) and labels (3 is the enhancing tumour)."""
    ids = []
    for i in range(n_cases):
        cid = f"BraTS-GLI-{i:05d}-000"
        image, label = synthesize_case(rng_for(1, "brats2023", i), SHAPE)
        for m, name in enumerate(["t1n", "t1c", "t2w", "t2f"]):
            save(image[m], root / cid / f"{cid}-{name}.nii.gz")
        save(np.where(label == 4, 3, label).astype(np.uint8), root / cid / f"{cid}-seg.nii.gz")
        ids.append(cid)
    return ids


# MSD Task01 numbering: 1 edema, 2 non-enhancing tumour (BraTS 1), 3 enhancing tumour (BraTS 4)
MSD_FROM_BRATS = np.array([0, 2, 1, 0, 3], np.uint8)
MSD_CHANNELS = ["FLAIR", "T1w", "t1gd", "T2w"]
MSD_LABELS = ["background", "edema", "non-enhancing tumor", "enhancing tumour"]


def write_msd(root: Path, n_cases: int, version: int = 1, shape=SHAPE) -> list[str]:
    """nnU-Net layout: imagesTr/<case>_0000.nii.gz ..., labelsTr/<case>.nii.gz and dataset.json
    (version 1: MSD-style 'modality' / {"0": name} labels and a training list; 2: nnU-Net v2)."""
    ids = [f"BRATS_{i + 1:03d}" for i in range(n_cases)]
    for i, cid in enumerate(ids):
        image, label = synthesize_case(rng_for(2, "msd", i), shape)
        for c in range(len(MSD_CHANNELS)):
            save(image[c], root / "imagesTr" / f"{cid}_{c:04d}.nii.gz")
        save(MSD_FROM_BRATS[label], root / "labelsTr" / f"{cid}.nii.gz")
    if version == 1:
        desc = {"name": "BRATS", "modality": {str(c): n for c, n in enumerate(MSD_CHANNELS)},
                "labels": {str(v): n for v, n in enumerate(MSD_LABELS)}, "numTraining": n_cases,
                "training": [{"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"} for c in ids]}
    else:
        desc = {"channel_names": {str(c): n for c, n in enumerate(MSD_CHANNELS)},
                "labels": {n: v for v, n in enumerate(MSD_LABELS)}, "numTraining": n_cases, "file_ending": ".nii.gz"}
    (root / "dataset.json").write_text(json.dumps(desc, indent=1))
    return ids


# A MALC-like labelling: raw labels as in the MICCAI 2012 protocol (odd cortical labels left).
MALC_LIKE_GROUPS = {
    "background": [0, 46, 63, 64],  # CSF and vessels are not among the structures
    "Left cerebral white matter": [45],
    "Left cerebral cortex": [101, 103, 105],
    "Right cerebral cortex": [100, 102, 104],
    "3rd ventricle": [4],
}


def write_malc_like(root: Path, n_cases: int) -> dict[str, np.ndarray]:
    """Plain pairs, MALC names: {part}-images/{case}.nii and {part}-labels/{case}_glm.nii."""
    labels = {}
    raw = [v for values in MALC_LIKE_GROUPS.values() for v in values]
    for i in range(n_cases):
        rng = rng_for(3, "malc", i)
        cid, part = f"10{i:02d}_3", "training" if i % 2 else "testing"
        label = np.zeros(SHAPE, np.int16)
        label[2:-2, 2:-2, 3:-3] = rng.choice(raw, size=(20, 20, 10))
        image = np.where(label > 0, rng.uniform(50, 150, SHAPE), 0).astype(np.float32)
        save(image, root / f"{part}-images" / f"{cid}.nii")
        save(label, root / f"{part}-labels" / f"{cid}_glm.nii")
        labels[cid] = label
    return labels


def test_brats2019_layout_with_grade_folders(tmp_path):
    data = tmp_path / "MICCAI_BraTS_2019_Data_Training"
    generate_dataset(data / "HGG", 3, shape=SHAPE, seed=0, prefix="BraTS19_HGG")
    generate_dataset(data / "LGG", 2, shape=SHAPE, seed=1, prefix="BraTS19_LGG")
    (data / "name_mapping.csv").write_text("Grade,BraTS_2019_subject_ID\n")
    make_read_only(data)
    before = snapshot(data)
    store = prepare("brats", data, tmp_path / "results" / "prepared", modalities=BRATS_MODALITIES, **BRATS_LABELS)
    assert snapshot(data) == before
    assert len(store.meta["cases"]) == 5
    assert sorted(store.index.case.unique()) == [f"BraTS19_HGG_{i:03d}" for i in range(3)] + \
        [f"BraTS19_LGG_{i:03d}" for i in range(2)]
    assert store.meta["regions"] == BRATS_LABELS["regions"]
    assert set(np.unique(store.labels)) <= {0, 1, 2, 3}
    assert store.meta["images_shape"][2:] == [32, 32]  # 24 x 24 padded to a multiple of 16
    assert (tmp_path / "results" / "prepared" / "bad_cases.csv").read_text().strip() == "case,file,reason"


def test_brats2023_names_and_labels(tmp_path):
    ids = write_brats2023(tmp_path / "data", 4)
    labels_2023 = {"label_values": [0, 1, 2, 3], "regions": {"WT": [1, 2, 3], "TC": [1, 3], "ET": [3]}}
    store = prepare("brats", tmp_path / "data", tmp_path / "prepared", modalities=["t1n", "t1c", "t2w", "t2f"],
                    **labels_2023)
    assert len(store.meta["cases"]) == 4
    assert store.meta["regions"]["ET"] == [3] and store.meta["label_values"] == [0, 1, 2, 3]
    # raw 3 (enhancing) is class 3; the stored slices of every case reproduce its label map
    raws = {case: np.asarray(nib.load(tmp_path / "data" / case / f"{case}-seg.nii.gz").dataobj) for case in ids}
    assert any((raw == 3).any() for raw in raws.values())  # (the generator leaves out the enhancing part in some)
    for case, raw in raws.items():
        z0, z1 = store.meta["cases"][case]["z_range"]
        assert np.array_equal(stored_labels(store, case), raw[..., z0:z1]), case


def test_brats2023_labels_under_the_2019_declaration_are_reported(tmp_path):
    write_brats2023(tmp_path / "data", 2)
    with pytest.raises(DatasetError, match=r"label values \[3\] not in the declared set \[0, 1, 2, 4\]"):
        prepare("brats", tmp_path / "data", tmp_path / "prepared", modalities=["t1n", "t1c", "t2w", "t2f"],
                **BRATS_LABELS)
    assert not (tmp_path / "prepared").exists()


@pytest.mark.parametrize("version", [1, 2])
def test_msd_layout_reads_channels_and_labels_from_dataset_json(tmp_path, version):
    data = tmp_path / "Task01_BrainTumour"
    ids = write_msd(data, 4, version)
    (data / "imagesTr" / f"._{ids[0]}_0000.nii.gz").write_bytes(b"macOS resource fork")  # ignored
    make_read_only(data)
    before = snapshot(data)
    store = prepare("msd", data, tmp_path / "prepared")
    assert snapshot(data) == before
    assert store.meta["modalities"] == MSD_CHANNELS
    assert store.meta["label_values"] == [0, 1, 2, 3]
    assert store.meta["regions"] == {"edema": [1], "non-enhancing tumor": [2], "enhancing tumour": [3]}
    assert sorted(store.meta["cases"]) == ids and store.n_channels == 4


def test_msd_regions_from_config_and_mismatched_channels(tmp_path):
    write_msd(tmp_path / "data", 3, version=2)
    store = prepare("msd", tmp_path / "data", tmp_path / "prepared", label_values=[0, 1, 2, 3],
                    regions={"WT": [1, 2, 3], "TC": [2, 3], "ET": [3]})
    assert store.meta["regions"] == {"WT": [1, 2, 3], "TC": [2, 3], "ET": [3]}
    with pytest.raises(DatasetError, match=r"dataset.modalities \['t1', 't2'\] differ from dataset.json's channel"):
        prepare("msd", tmp_path / "data", tmp_path / "other", modalities=["t1", "t2"])


def test_msd_original_4d_images_are_reported(tmp_path):
    """The original MSD archive stores all channels in one 4D file: not the nnU-Net layout."""
    data = tmp_path / "data"
    write_msd(data, 2, version=1)
    for path in (data / "imagesTr").glob("BRATS_001_*.nii.gz"):
        path.unlink()
    save(np.ones((*SHAPE, 4), np.float32), data / "imagesTr" / "BRATS_001.nii.gz")
    with pytest.raises(DatasetError) as err:
        prepare("msd", data, tmp_path / "prepared")
    assert f"case BRATS_001: {data / 'imagesTr' / 'BRATS_001_0000.nii.gz'}: missing modality 'FLAIR'" in str(err.value)


def test_msd_training_list_naming_a_case_twice_is_a_duplicate(tmp_path):
    data = tmp_path / "data"
    write_msd(data, 3, version=1)
    desc = json.loads((data / "dataset.json").read_text())
    desc["training"].append(desc["training"][0])
    (data / "dataset.json").write_text(json.dumps(desc))
    with pytest.raises(DatasetError, match=r"case BRATS_001: .*labelsTr: duplicate case id \(2 cases are named BRATS_001\)"):
        prepare("msd", data, tmp_path / "prepared")
    assert not (tmp_path / "prepared").exists()


def test_pairs_layout_groups_labels_into_structures(tmp_path):
    data = tmp_path / "MALC"
    raw_labels = write_malc_like(data, 4)
    make_read_only(data)
    before = snapshot(data)
    store = prepare("pairs", data, tmp_path / "prepared", modalities=["t1"], label_groups=MALC_LIKE_GROUPS,
                    pairs={"images": "{part}-images/{case}.nii", "labels": "{part}-labels/{case}_glm.nii"})
    assert snapshot(data) == before
    assert sorted(store.meta["cases"]) == sorted(raw_labels)
    names = list(MALC_LIKE_GROUPS)
    assert store.meta["label_values"] == list(range(len(names)))
    assert store.meta["regions"] == {name: [i] for i, name in enumerate(names) if i > 0}
    assert store.meta["label_groups"] == MALC_LIKE_GROUPS
    # every raw label became its group's class
    case = "1001_3"
    z0, z1 = store.meta["cases"][case]["z_range"]
    expected = np.zeros_like(raw_labels[case], np.uint8)
    for index, values in enumerate(MALC_LIKE_GROUPS.values()):
        expected[np.isin(raw_labels[case], values)] = index
    assert np.array_equal(stored_labels(store, case), expected[..., z0:z1])


def test_pairs_label_outside_every_group_and_overlapping_groups(tmp_path):
    write_malc_like(tmp_path / "data", 2)
    pairs = {"images": "{part}-images/{case}.nii", "labels": "{part}-labels/{case}_glm.nii"}
    groups = {k: v for k, v in MALC_LIKE_GROUPS.items() if k != "3rd ventricle"}
    with pytest.raises(DatasetError, match=r"case 1000_3: .*testing-labels/1000_3_glm.nii: label values \[4\] not in"):
        prepare("pairs", tmp_path / "data", tmp_path / "prepared", modalities=["t1"], label_groups=groups, pairs=pairs)
    with pytest.raises(DatasetError, match="label 45 is in both 'background' and 'Left cerebral white matter'"):
        prepare("pairs", tmp_path / "data", tmp_path / "prepared", modalities=["t1"], pairs=pairs,
                label_groups={**MALC_LIKE_GROUPS, "background": [0, 45, 46, 63, 64]})


def test_pairs_with_images_and_labels_in_one_folder_and_several_modalities(tmp_path):
    data = tmp_path / "data"
    for i in range(3):
        image, label = synthesize_case(rng_for(4, "pairs", i), SHAPE)
        save(image[0], data / f"sub{i}_T1.nii.gz")
        save(image[3], data / f"sub{i}_FLAIR.nii.gz")
        save(label, data / f"sub{i}_seg.nii.gz")
    store = prepare("pairs", data, tmp_path / "prepared", modalities=["T1", "FLAIR"], **BRATS_LABELS,
                    pairs={"images": "{case}_{modality}.nii.gz", "labels": "{case}_seg.nii.gz"})
    assert sorted(store.meta["cases"]) == ["sub0", "sub1", "sub2"] and store.n_channels == 2


def test_volumes_are_read_in_ras_orientation(tmp_path):
    """A volume stored sagittally (axes S, A, L) is sliced along its inferior-superior axis."""
    ras = np.zeros((10, 12, 8), np.float32)
    ras[2:8, 3:9, 2:6] = np.arange(6 * 6 * 4).reshape(6, 6, 4) + 1
    # stored[i, j, k] = ras[9 - k, j, i]: array axes are (S, A, L)
    stored = np.ascontiguousarray(np.flip(np.transpose(ras, (2, 1, 0)), axis=2))
    affine = np.array([[0, 0, -1, 9], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], float)
    for i in range(2):
        save(stored, tmp_path / "data" / f"c{i}" / f"c{i}_t1.nii.gz", affine)
        save((stored > 0).astype(np.uint8), tmp_path / "data" / f"c{i}" / f"c{i}_seg.nii.gz", affine)
    case = find_cases("brats", tmp_path / "data", {"modalities": ["t1"]})[0]
    loaded = load_case(case)
    assert np.array_equal(loaded.image[0], ras) and np.array_equal(loaded.label, (ras > 0).astype(np.int32))
    assert nib.aff2axcodes(loaded.affine) == ("R", "A", "S")
    store = prepare("brats", tmp_path / "data", tmp_path / "prepared", modalities=["t1"],
                    label_values=[0, 1], regions={"brain": [1]})
    assert store.meta["cases"]["c0"]["original_shape"] == [10, 12, 8]
    assert store.meta["cases"]["c0"]["z_range"] == [2, 6]


# ------------------------------------------------------------------------------- the workflow, for real

REPO = Path(__file__).resolve().parents[1]


def tiny_config(path: Path, dataset: dict) -> Path:
    """config_tiny.yaml's network and training on a given dataset; one seed, two rounds, to stay
    near a minute on 2 cores. data_root is a placeholder: the run points it at the data."""
    tiny = yaml.safe_load((REPO / "workflow_tests" / "config_tiny.yaml").read_text())
    cfg = {key: tiny[key] for key in ("results_dir", "unet", "training", "evaluation")}
    cfg["evaluation"] = {**tiny["evaluation"], "save_predictions": True}  # the NIfTI rule runs here
    cfg.update(data_root="/nonexistent/placeholder", dataset=dataset, seeds=tiny["seeds"][:1],
               schedule=tiny["schedule"][:2], methods={"random": {}, "full": tiny["methods"]["full"]})
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def read_only_prefix(folder: Path) -> list[str]:
    """A command prefix that runs a command with folder bind-mounted read-only in a private mount
    namespace: chmod alone binds no one when the tests run as root. Empty where not permitted."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return []
    prefix = ["unshare", "-m", "sh", "-c",
              'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" "$0" && exec "$@"', str(folder)]
    return prefix if subprocess.run([*prefix, "true"], capture_output=True).returncode == 0 else []


def run_snakemake(workdir: Path, config: Path, data_root: Path, *args: str) -> subprocess.CompletedProcess:
    """snakemake on the repository's Snakefile, in workdir, with data_root given on the command
    line and read-only (see make_read_only and read_only_prefix)."""
    workdir.mkdir(exist_ok=True)
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--directory", str(workdir),
           "--snakefile", str(REPO / "Snakefile"), "--configfile", str(config),
           "--config", f"data_root={data_root}", *args]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    return subprocess.run(read_only_prefix(data_root) + cmd, capture_output=True, text=True, env=env, timeout=1200)


def assert_only_results_and_logs(workdir: Path) -> None:
    assert {p.name for p in workdir.iterdir()} <= {"results", "logs", ".snakemake"}


@pytest.mark.slow
def test_workflow_on_a_small_brats_dataset(tmp_path):
    data = tmp_path / "MICCAI_BraTS_2019_Data_Training"
    generate_dataset(data / "HGG", 4, shape=(32, 32, 20), seed=3, prefix="BraTS19_HGG")
    generate_dataset(data / "LGG", 2, shape=(32, 32, 20), seed=4, prefix="BraTS19_LGG")
    make_read_only(data)
    before = snapshot(data)
    config = tiny_config(tmp_path / "brats_small.yaml", {
        "name": "brats_small", "layout": "brats", "modalities": BRATS_MODALITIES, **BRATS_LABELS,
        "test_fraction": 0.34})
    run = run_snakemake(tmp_path / "run", config, data)
    assert run.returncode == 0, run.stderr[-3000:]
    assert snapshot(data) == before
    assert_only_results_and_logs(tmp_path / "run")
    metrics = pd.read_csv(tmp_path / "run" / "results" / "brats_small" / "metrics.csv")
    assert set(metrics.region) == {"WT", "TC", "ET"} and {"random", "full"} <= set(metrics.method)
    predictions = sorted((tmp_path / "run" / "results" / "brats_small" / "runs" / "random" / "seed0").glob(
        "round*/predictions/*_pred.nii.gz"))
    assert predictions and nib.load(predictions[0]).shape == (32, 32, 20)


@pytest.mark.slow
def test_workflow_on_a_small_msd_dataset_with_labels_from_dataset_json(tmp_path):
    data = tmp_path / "Task01_BrainTumour"
    write_msd(data, 6, version=2, shape=(32, 32, 20))
    make_read_only(data)
    before = snapshot(data)
    # No modalities, label_values or regions: dataset.json gives them. --replace-workflow-config keeps
    # the embedded config.yaml's BraTS keys from being merged in underneath.
    config = tiny_config(tmp_path / "msd_small.yaml", {"name": "msd_small", "layout": "msd", "test_fraction": 0.34})
    run = run_snakemake(tmp_path / "run", config, data, "--replace-workflow-config")
    assert run.returncode == 0, run.stderr[-3000:]
    assert snapshot(data) == before
    assert_only_results_and_logs(tmp_path / "run")
    results = tmp_path / "run" / "results" / "msd_small"
    assert SliceStore(results / "prepared").meta["modalities"] == MSD_CHANNELS
    metrics = pd.read_csv(results / "metrics.csv")
    assert set(metrics.region) == set(MSD_LABELS[1:]) and set(metrics.method) == {"random", "full"}
