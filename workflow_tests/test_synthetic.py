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


def test_lesion_look_fades_across_its_outline_and_the_outline_shifts():
    from slicepick.data.synthetic import EDGE_SHIFT, _fading_edge

    grid = np.meshgrid(*[np.arange(32, dtype=float)] * 2, indexing="ij")
    disc = (grid[0] - 16) ** 2 + (grid[1] - 16) ** 2 <= 8 ** 2
    midpoints = []
    for draw in range(20):
        look = _fading_edge(np.random.default_rng(draw), disc)
        assert look[16, 16] > 0.99 and look[0, 0] < 0.01  # full inside, nothing far outside
        row = look[16, 16:]  # from the centre outwards: falls monotonically, over more than one voxel
        assert np.all(np.diff(row) <= 0) and ((row > 0.1) & (row < 0.9)).sum() >= 1
        midpoints.append(np.interp(0.5, row[::-1], np.arange(16)[::-1]))  # where the look is half gone
    # the drawn outline (radius 8, between voxels 8 and 9) sits inside or outside the ramp's middle
    offsets = np.array(midpoints) - 8.5
    assert np.abs(offsets).max() <= EDGE_SHIFT + 0.5 and offsets.min() < -0.1 and offsets.max() > 0.1
