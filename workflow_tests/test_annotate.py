"""Annotate mode for real: `snakemake annotate` rounds played by a test annotator, and `snakemake plan`.

The data are small synthetic volumes written with an LPS affine (as DICOM converters write them),
so that slice indices in the file's own voxel order are checked against a grid that is not RAS.
The data and annotations folders are made read-only, and their checksums and modification times
are compared before and after every run (tests run as root, whom chmod does not stop).
"""
import hashlib
import shutil
import stat
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO, TINY_FEATURES, snakemake
from slicepick.data.synthetic import synthesize_case
from slicepick.seeding import rng_for

pytestmark = pytest.mark.slow

SHAPE = (32, 32, 20)
N_CASES = 6
PER_ROUND = 4
IGNORE = 255
AXIS = 2
LPS = np.array([[-2.0, 0, 0, 31.0], [0, -2.0, 0, 29.0], [0, 0, 2.0, -18.0], [0, 0, 0, 1]])


def write_data(root: Path, truth: Path) -> None:
    """Images (one modality, T2-like) in data_root; the ground truth kept apart, for the annotator."""
    root.mkdir()
    truth.mkdir()
    for i in range(N_CASES):
        image, label = synthesize_case(rng_for(11, "annotate-test", i), SHAPE)
        nib.save(nib.Nifti1Image(image[2], LPS), root / f"case{i}.nii.gz")
        nib.save(nib.Nifti1Image(label, LPS), truth / f"case{i}.nii.gz")


def read_only(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH | (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH
                                                                  if path.is_dir() else 0))


def writable(folder: Path) -> None:
    folder.chmod(0o755)
    for path in folder.iterdir():
        path.chmod(0o644)


def snapshot(folder: Path) -> dict:
    """Every file's checksum and modification time."""
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def tree(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*"))}


def write_config(path: Path, data_root: Path, annotations: Path) -> Path:
    cfg = yaml.safe_load((REPO / "config" / "annotate.yaml").read_text())  # the shipped example, made tiny
    cfg.update(data_root=str(data_root), annotations_root=str(annotations))
    cfg["dataset"].update(name="mine", label_values=[0, 1, 2, 4])
    cfg["annotate"].update(per_round=PER_ROUND, method="ggs", axis=AXIS, ignore_value=IGNORE)
    cfg["unet"]["features"] = TINY_FEATURES
    cfg["training"].update(epochs_per_round=2, min_steps=4, batch_size=8, device="cpu")
    cfg["vae"].update(channels=[4, 8, 8, 8], epochs=2, batch_size=8, lr=1.0e-3)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def annotated_slices(label: np.ndarray) -> set:
    return set(np.flatnonzero(~np.any(label == IGNORE, axis=(0, 1))).tolist())


def current_annotation(annotations: Path, case: str) -> np.ndarray:
    path = annotations / f"{case}.nii.gz"
    return np.asarray(nib.load(path).dataobj) if path.exists() else np.full(SHAPE, IGNORE, np.int64)


def check_round(folder: Path, annotations: Path, data_root: Path) -> pd.DataFrame:
    """plan.csv names exactly the slices to_annotate/ clears; every file on the image's grid."""
    plan = pd.read_csv(folder / "plan.csv")
    assert list(plan.columns) == ["case", "axis", "slice", "rank", "method", "score"]
    assert list(plan["rank"]) == list(range(1, len(plan) + 1)) and (plan.axis == AXIS).all()
    assert not plan.duplicated(["case", "slice"]).any()
    assert (folder / "contact_sheet.png").stat().st_size > 0
    files = sorted((folder / "to_annotate").iterdir())
    assert [f.name for f in files] == sorted(f"{c}.nii.gz" for c in plan.case.unique())
    for path in files:
        case = path.name[:-len(".nii.gz")]
        image = nib.load(data_root / path.name)
        out = nib.load(path)
        assert out.shape == image.shape and np.allclose(out.affine, image.affine, atol=1e-4)
        assert np.issubdtype(out.get_data_dtype(), np.integer)
        data = np.asarray(out.dataobj)
        before = current_annotation(annotations, case)
        cleared = annotated_slices(data) - annotated_slices(before)
        assert cleared == set(plan.loc[plan.case == case, "slice"])
        assert not annotated_slices(before) & cleared  # never an annotated slice
        assert np.array_equal(data[before != IGNORE], before[before != IGNORE])  # annotations kept
        untouched = [s for s in range(SHAPE[2]) if s not in cleared]
        assert np.array_equal(data[..., untouched], before[..., untouched])
    return plan


def annotate(folder: Path, annotations: Path, truth: Path, fill=None, skip=()) -> None:
    """The annotator: paints the cleared slices of to_annotate/ (ground truth, or ``fill``; the slices
    in ``skip`` set back to the ignore value) and saves into the annotations folder (rewriting the
    affine in float32, as annotation tools do)."""
    writable(annotations)
    plan = pd.read_csv(folder / "plan.csv")
    for case, rows in plan.groupby("case"):
        data = np.asarray(nib.load(folder / "to_annotate" / f"{case}.nii.gz").dataobj).astype(np.uint8)
        gt = np.asarray(nib.load(truth / f"{case}.nii.gz").dataobj)
        for s in rows.slice:
            if (case, s) in skip:  # left unannotated (a cleared slice saved as it is would be all background)
                data[..., s] = IGNORE
            else:
                data[..., s] = gt[..., s] if fill is None else fill
        nib.save(nib.Nifti1Image(data, LPS.astype(np.float32)), annotations / f"{case}.nii.gz")
    read_only(annotations)


def n_annotated(annotations: Path) -> int:
    return sum(len(annotated_slices(np.asarray(nib.load(p).dataobj))) for p in annotations.glob("*.nii.gz"))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("annotate")
    data_root, truth, annotations = base / "images", base / "truth", base / "annotations"
    write_data(data_root, truth)
    annotations.mkdir()
    read_only(data_root)
    read_only(annotations)
    config = write_config(base / "annotate.yaml", data_root, annotations)
    return {"base": base, "data": data_root, "truth": truth, "annotations": annotations, "config": config,
            "work": base / "work", "results": base / "work" / "results" / "mine"}


@pytest.fixture(scope="module")
def three_rounds(world):
    """Round 0 (the start), then two rounds of annotating the suggestions and running again."""
    data_before = snapshot(world["data"])
    rounds = []
    for k in range(3):
        ann_before = snapshot(world["annotations"])
        snakemake(world["work"], "--cores", "2", "annotate", configfile=world["config"])
        assert snapshot(world["data"]) == data_before and snapshot(world["annotations"]) == ann_before
        folder = world["results"] / "suggestions" / f"round{k}"
        plan = check_round(folder, world["annotations"], world["data"])
        latest = world["results"] / "suggestions" / "latest"
        assert pd.read_csv(latest / "plan.csv").equals(plan)
        check_round(latest, world["annotations"], world["data"])
        rounds.append(plan)
        if k == 0:  # the state every branch of test_different_annotations starts from
            shutil.copytree(world["work"], world["base"] / "after_round0", symlinks=True)
        count = n_annotated(world["annotations"])
        annotate(folder, world["annotations"], world["truth"])
        assert n_annotated(world["annotations"]) == count + PER_ROUND
    return rounds


def test_rounds_suggest_only_unannotated_slices(world, three_rounds):
    start, first, second = three_rounds
    assert set(start.method) == {"fixed_interval"} and start.score.isna().all()
    assert set(first.method) == {"ggs"} and set(second.method) == {"ggs"}
    assert first.score.notna().all() and second.score.notna().all()
    seen = set()
    for plan in three_rounds:
        keys = set(zip(plan.case, plan.slice))
        assert len(keys) == PER_ROUND and not keys & seen  # each round only slices not annotated before
        seen |= keys
    assert n_annotated(world["annotations"]) == 3 * PER_ROUND
    assert (world["results"] / "suggestions" / "round1" / "model.pt").is_file()
    assert not (world["results"] / "suggestions" / "round3").exists()


def test_rerun_with_unchanged_annotations_writes_nothing(world, three_rounds):
    # the third round's annotations are new: one more round, then nothing on the next run
    snakemake(world["work"], "--cores", "2", "annotate", configfile=world["config"])
    assert (world["results"] / "suggestions" / "round3" / "plan.csv").is_file()
    before = tree(world["work"] / "results")
    proc = snakemake(world["work"], "--cores", "2", "annotate", configfile=world["config"])
    assert "Nothing to be done" in proc.stdout + proc.stderr
    assert tree(world["work"] / "results") == before


def test_bad_annotation_file_is_refused(world, three_rounds):
    snakemake(world["work"], "--cores", "2", "annotate", configfile=world["config"])  # up to date first
    before = tree(world["work"] / "results")
    annotations = world["annotations"]
    writable(annotations)
    good = annotations / "case0.nii.gz"
    saved = good.read_bytes()
    bad_cases = {
        "case0.nii.gz": nib.Nifti1Image(np.full((32, 32, 19), IGNORE, np.uint8), LPS),  # wrong shape
        "case1.nii.gz": nib.Nifti1Image(np.full(SHAPE, 3, np.uint8), LPS),  # 3: not a label value
    }
    try:
        for name, img in bad_cases.items():
            original = (annotations / name).read_bytes() if (annotations / name).exists() else None
            nib.save(img, annotations / name)
            proc = snakemake(world["work"], "--cores", "2", "annotate", configfile=world["config"], check=False)
            assert proc.returncode != 0
            assert str(annotations / name) in proc.stderr
            assert tree(world["work"] / "results") == before
            if original is None:
                (annotations / name).unlink()
            else:
                (annotations / name).write_bytes(original)
        moved = nib.Nifti1Image(np.asarray(nib.load(good).dataobj), LPS + np.diag([0, 0, 0.01, 0]))  # other affine
        nib.save(moved, annotations / "case0.nii.gz")
        proc = snakemake(world["work"], "--cores", "2", "annotate", configfile=world["config"], check=False)
        assert proc.returncode != 0 and "case0.nii.gz: affine differs" in proc.stderr
        assert tree(world["work"] / "results") == before
    finally:
        good.write_bytes(saved)
        read_only(annotations)


def test_different_annotations_lead_to_different_suggestions(world, three_rounds):
    """From the same round 0: the ground truth gives round 1's suggestions (three_rounds), all-background
    annotations (accepted, with a warning) give others; a suggestion left unannotated is carried first."""
    truth_round1 = three_rounds[1]
    branches = {}
    for name, fill, skip in [("background", 0, ()), ("carried", None, "first")]:
        work = world["base"] / f"branch_{name}"
        shutil.copytree(world["base"] / "after_round0", work, symlinks=True)
        annotations = world["base"] / f"annotations_{name}"
        annotations.mkdir()
        round0 = work / "results" / "mine" / "suggestions" / "round0"
        start = pd.read_csv(round0 / "plan.csv")
        skipped = {(start.case[0], int(start.slice[0]))} if skip == "first" else set()
        annotate(round0, annotations, world["truth"], fill=fill, skip=skipped)
        config = write_config(world["base"] / f"{name}.yaml", world["data"], annotations)
        proc = snakemake(work, "--cores", "2", "annotate", configfile=config)
        plan = check_round(work / "results" / "mine" / "suggestions" / "round1", annotations, world["data"])
        branches[name] = (plan, skipped, proc)
    plan, _, proc = branches["background"]
    assert "came back all background: accepted" in proc.stderr
    assert set(zip(plan.case, plan.slice)) != set(zip(truth_round1.case, truth_round1.slice))
    plan, skipped, _ = branches["carried"]
    (case, s), = skipped
    assert (plan.case[0], int(plan.slice[0]), plan.method[0]) == (case, s, "carried")
    assert len(plan) == PER_ROUND and (plan.method[1:] == "ggs").all()


def test_plan_meets_the_budget_exactly(world, tmp_path):
    for budget in (7, 13):
        proc_dir = tmp_path / f"b{budget}"
        snakemake(proc_dir, "--cores", "2", "plan", "--config", f"plan_budget={budget}", configfile=world["config"])
        folder = proc_dir / "results" / "mine" / "plan"
        plan = pd.read_csv(folder / "plan.csv")
        assert len(plan) == budget and not plan.duplicated(["case", "slice"]).any()
        assert set(plan.method) == {"fixed_interval"}
        # as many volumes as the budget allows at the default 3 slices each
        assert plan.case.nunique() == min(N_CASES, budget // 3)
        for path in (folder / "to_annotate").iterdir():
            out, image = nib.load(path), nib.load(world["data"] / path.name)
            assert out.shape == image.shape and np.allclose(out.affine, image.affine, atol=1e-4)
            data = np.asarray(out.dataobj)
            cleared = annotated_slices(data)
            assert cleared == set(plan.loc[plan.case == path.name[:-7], "slice"])
            assert (data[..., sorted(cleared)] == 0).all()
            for s in cleared:  # never a blank slice
                assert np.asarray(image.dataobj)[..., s].any()
