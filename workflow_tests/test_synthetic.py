import nibabel as nib
import numpy as np

from slicepick.data.synthetic import MODALITIES, generate_dataset, synthesize_case
from slicepick.seeding import rng_for


def test_writes_brats_layout(tmp_path):
    ids = generate_dataset(tmp_path, n_cases=2, shape=(32, 32, 20), seed=1)
    assert ids == ["SYN_000", "SYN_001"]
    for cid in ids:
        for name in [*MODALITIES, "seg"]:
            img = nib.load(tmp_path / cid / f"{cid}_{name}.nii.gz")
            assert img.shape == (32, 32, 20)
            assert np.allclose(np.diag(img.affine)[:3], 2.0)


def test_deterministic_for_a_seed_and_different_across_seeds():
    a_img, a_lab = synthesize_case(rng_for(0, "synthetic", 0), (32, 32, 20))
    b_img, b_lab = synthesize_case(rng_for(0, "synthetic", 0), (32, 32, 20))
    c_img, _ = synthesize_case(rng_for(1, "synthetic", 0), (32, 32, 20))
    assert np.array_equal(a_img, b_img) and np.array_equal(a_lab, b_lab)
    assert not np.array_equal(a_img, c_img)


def test_brats_labels_nested_tumour_and_blank_ends():
    sizes = []
    for i in range(6):
        image, label = synthesize_case(rng_for(0, "synthetic", i), (48, 48, 40))
        assert set(np.unique(label)) <= {0, 1, 2, 4}
        assert (label == 2).any() and (label == 4).any()
        # tumour lies inside the brain (non-zero image) and the axial ends are blank
        assert np.all(image[:, label > 0] > 0)
        assert not image[..., 0].any() and not image[..., -1].any()
        sizes.append(int((label > 0).sum()))
    assert max(sizes) > 2 * min(sizes), "tumour size should vary across cases"


def test_several_tissue_intensities_inside_the_brain():
    image, label = synthesize_case(rng_for(0, "synthetic", 0), (48, 48, 40))
    t2 = image[2][(image[2] > 0) & (label == 0)]
    t2 = t2 / t2.max()
    hist, _ = np.histogram(t2, bins=10)
    assert (hist > 0.02 * t2.size).sum() >= 3  # grey, white matter and CSF modes
