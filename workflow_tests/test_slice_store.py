"""The reader, the split and preparation into the slice store."""
import json

import numpy as np
import pandas as pd
import pytest

from slicepick.data.prepare import SliceStore, nonblank_range, prepare_dataset, split_cases, zscore_in_mask
from slicepick.data.readers import DatasetError, find_cases, load_case

MODS = ["t1", "t1ce", "t2", "flair"]


def test_reader_loads_channels_first(tiny_raw):
    cases = find_cases("brats", tiny_raw, {"modalities": MODS})
    assert [c.case_id for c in cases] == ["SYN_000", "SYN_001", "SYN_002", "SYN_003"]
    case = load_case(cases[0])
    assert case.image.shape == (4, 32, 32, 20) and case.image.dtype == np.float32
    assert case.label.shape == (32, 32, 20)
    assert case.spacing_mm == (2.0, 2.0, 2.0)


def test_reader_names_missing_file(tmp_path, tiny_raw):
    cases = find_cases("brats", tiny_raw, {"modalities": ["t1", "dwi"]})
    with pytest.raises(DatasetError, match=r"case SYN_000: .*SYN_000_dwi.nii.gz: (file missing|unreadable)"):
        load_case(cases[0])


def test_split_is_by_case_seeded_and_keeps_both_sides():
    ids = [f"c{i}" for i in range(10)]
    a, b, c = split_cases(ids, 0.3, 0), split_cases(ids, 0.3, 0), split_cases(ids, 0.3, 1)
    assert a.equals(b)
    assert (a.subset == "test").sum() == 3
    assert not a.equals(c)
    assert (split_cases(ids[:2], 0.01, 0).subset == "test").sum() == 1
    with pytest.raises(DatasetError):
        split_cases(["only"], 0.5, 0)


def test_zscore_inside_mask_only():
    v = np.zeros((4, 4, 2), np.float32)
    v[1:3, 1:3] = [[[1, 2], [3, 4]], [[5, 6], [7, 8]]]
    z = zscore_in_mask(v)
    inside = z[v != 0]
    assert abs(inside.mean()) < 1e-6 and abs(inside.std() - 1) < 1e-5
    assert np.all(z[v == 0] == 0)


def test_nonblank_range_drops_blank_ends():
    img = np.zeros((2, 3, 3, 6), np.float32)
    img[1, 1, 1, 2] = 1
    img[0, 0, 0, 4] = 1
    assert nonblank_range(img) == (2, 5)


def test_store_contents(tiny_store, tiny_raw):
    n, c, h, w = tiny_store.meta["images_shape"]
    assert (c, h, w) == (4, 32, 32)
    assert tiny_store.images.shape == (n, 4, 32, 32) and tiny_store.labels.shape == (n, 32, 32)
    index = tiny_store.index
    assert list(index.sample_id) == list(range(n))
    split = pd.read_csv(tiny_store.folder / "split.csv")
    assert set(index.case) == set(split.case)
    # every case is on one side of the split only
    assert index.groupby("case").subset.nunique().max() == 1
    assert set(tiny_store.pool_ids) == set(index.sample_id[index.subset == "train"])
    # labels are class indices of [0, 1, 2, 4]; stored slices are not blank
    assert tiny_store.labels.max() <= 3
    assert all(np.abs(tiny_store.images[i]).sum() > 0 for i in range(n))
    # slices round-trip to the raw volume: same label map at the recorded z
    row = index.iloc[5]
    raw = load_case(find_cases("brats", tiny_raw, {"modalities": MODS})[int(row.case[-3:])])
    lut = np.array([0, 1, 2, 0, 3])
    assert np.array_equal(tiny_store.labels[5], lut[raw.label[..., row.z]])


def test_padding_to_common_size_and_resize(tmp_path):
    from slicepick.data.synthetic import generate_dataset

    generate_dataset(tmp_path / "a", 2, shape=(28, 32, 20), seed=0, prefix="A")
    generate_dataset(tmp_path / "a", 2, shape=(32, 24, 20), seed=1, prefix="B")
    cases = find_cases("brats", tmp_path / "a", {"modalities": MODS})
    prepare_dataset(cases, tmp_path / "s", modalities=MODS, label_values=[0, 1, 2, 4], regions={"WT": [1, 2, 4]},
                    test_fraction=0.5, split_seed=0)
    assert SliceStore(tmp_path / "s").meta["images_shape"][2:] == [32, 32]
    prepare_dataset(cases, tmp_path / "r", modalities=MODS, label_values=[0, 1, 2, 4], regions={"WT": [1, 2, 4]},
                    test_fraction=0.5, split_seed=0, resize=[16, 16])
    meta = json.loads((tmp_path / "r" / "meta.json").read_text())
    assert meta["images_shape"][2:] == [16, 16]
    assert meta["cases"]["A_000"]["spacing_mm"] == [4.0, 4.0, 2.0]


def test_bad_label_leaves_no_output(tmp_path, tiny_raw):
    cases = find_cases("brats", tiny_raw, {"modalities": MODS})
    with pytest.raises(DatasetError, match="label values \\[4\\] not in the declared set"):
        prepare_dataset(cases, tmp_path / "out", modalities=MODS, label_values=[0, 1, 2], regions={"WT": [1, 2]},
                        test_fraction=0.25, split_seed=0)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.tmp").exists()


def test_read_images_equals_the_memory_map(tiny_store):
    ids = np.array([5, 0, 5, len(tiny_store.images) - 1])
    assert np.array_equal(tiny_store.read_images(ids), np.array(tiny_store.images[ids]))
    assert tiny_store.read_images([]).shape == (0, *tiny_store.images.shape[1:])
    with pytest.raises(IndexError, match="outside the store"):
        tiny_store.read_images([len(tiny_store.images)])
