"""A checkpoint is resumed only by the run that wrote it: its fingerprint names the store and the
previous model by content (store checksum written once by prepare; the model file hashed)."""
from __future__ import annotations

import hashlib
import shutil
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pandas as pd

from slicepick.checksums import file_digest, resume_fingerprint
from slicepick.data.prepare import SliceStore, prepare_dataset
from slicepick.data.readers import find_cases
from slicepick.data.synthetic import generate_dataset
from slicepick.models import build_unet, save_model, unet_spec

MODALITIES = ["t1", "t1ce", "t2", "flair"]
LABELS = {"label_values": [0, 1, 2, 4], "regions": {"WT": [1, 2, 4]}}


def prepare(data, out) -> SliceStore:
    prepare_dataset(find_cases("brats", data, {"modalities": MODALITIES}), out, modalities=MODALITIES, **LABELS,
                    test_fraction=0.34, split_seed=0)
    return SliceStore(out)


def recomputed_checksum(store: SliceStore) -> str:
    """The checksum from the files on disk, as prepare must have streamed it while writing them."""
    def digest(*chunks):
        h = hashlib.sha256()
        for chunk in chunks:
            h.update(chunk)
        return h.hexdigest()

    folder = store.folder
    tests = [c for c in pd.read_csv(folder / "split.csv").case if store.meta["cases"][c]["subset"] == "test"]
    parts = {"images": digest((folder / "images.f32").read_bytes()), "labels": digest((folder / "labels.u8").read_bytes()),
             "test_labels": digest(*[b for c in tests for b in (c.encode(), np.load(folder / "test_labels" / f"{c}.npy").tobytes())]),
             "index": digest((folder / "index.csv").read_bytes()), "split": digest((folder / "split.csv").read_bytes())}
    return hashlib.sha256("".join(f"{k}:{v}\n" for k, v in parts.items()).encode()).hexdigest()


def test_store_checksum_is_the_content_of_the_store(tmp_path):
    data = tmp_path / "data"
    generate_dataset(data, 3, shape=(20, 20, 12), seed=0)
    a = prepare(data, tmp_path / "a" / "prepared")
    b = prepare(data, tmp_path / "elsewhere" / "prepared")
    assert a.checksum == b.checksum == recomputed_checksum(a)
    seg = data / "SYN_002" / "SYN_002_seg.nii.gz"  # one label voxel changes upstream
    img = nib.load(seg)
    label = np.asarray(img.dataobj).copy()
    label[10, 10, 6] = 4 if label[10, 10, 6] != 4 else 2
    nib.save(nib.Nifti1Image(label, img.affine), seg)
    assert prepare(data, tmp_path / "c" / "prepared").checksum != a.checksum


def test_resume_fingerprint_names_inputs_by_content(tmp_path):
    spec = unet_spec(4, 4, [4, 8, 8, 16, 16, 4])
    previous = tmp_path / "round0" / "model.pt"
    previous.parent.mkdir()
    save_model(previous, build_unet(4, 4, spec["features"]), spec)
    moved = tmp_path / "moved" / "model.pt"  # the same model in a checkout that moved
    moved.parent.mkdir()
    shutil.copy2(previous, moved)
    store = SimpleNamespace(checksum="abc")
    settings = {"selection": [1, 2, 3], "epochs": 2}
    first = resume_fingerprint(store, previous, **settings)
    assert resume_fingerprint(store, moved, **settings) == first
    assert resume_fingerprint(SimpleNamespace(checksum="abd"), previous, **settings) != first  # store changed
    assert resume_fingerprint(store, None, **settings) != first
    assert resume_fingerprint(store, previous, **{**settings, "selection": [1, 2, 4]}) != first
    save_model(previous, build_unet(4, 4, spec["features"]), spec)  # another previous model, same path
    assert file_digest(previous) != file_digest(moved)
    assert resume_fingerprint(store, previous, **settings) != first
