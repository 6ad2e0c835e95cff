"""ggs (gradient-guided sampling): the choice on constructed latent spaces, the gradient step,
the whole suggestion on a tiny store, and the latent-space figure."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from slicepick.latent_plots import plot_latent_space
from slicepick.models import build_unet
from slicepick.strategies import get_strategy
from slicepick.strategies.base import SuggestionContext
from slicepick.strategies.ggs import choose_along_gradient, ggs_params, gradient_step, latent_step
from slicepick.training import dice_loss
from slicepick.vae import build_vae, encode, encode_images, save_vae


def choose(z, z_prime, latents, k=1, ids=None, seed=0, **kw):
    latents = np.asarray(latents, float)
    ids = np.arange(100, 100 + len(latents)) if ids is None else np.asarray(ids)
    return choose_along_gradient(z, z_prime, latents, ids, k, rng=np.random.default_rng(seed), **kw)


# --- Eq. 5-6 on latent spaces where the answer is known --------------------------------------------

SOURCE, STEP = [[0.0, 0.0]], [[0.1, 0.0]]  # the gradient points along +z1


def test_nearest_sample_within_the_angle_is_chosen():
    latents = [[0.5, 0.4],    # 100: cos 0.78, distance to z' 0.57  <- nearest in the cone
               [1.0, 0.1],    # 101: cos 0.99, distance 0.91
               [0.1, 0.9],    # 102: cos 0.11 (outside), distance 0.90
               [3.0, 0.0]]    # 103: cos 1, far
    assert choose(SOURCE, STEP, latents, angular_threshold=0.5) == [100]
    assert choose(SOURCE, STEP, latents, angular_threshold=0.9) == [101]  # a narrower cone walks on


def test_nearer_sample_in_the_wrong_direction_needs_the_angle_off():
    latents = [[-0.4, 0.0],   # 100: distance 0.5 to z', but behind the source (cos -1)
               [1.0, 0.0]]    # 101: distance 0.9, along the gradient
    assert choose(SOURCE, STEP, latents, use_angle=True) == [101]
    assert choose(SOURCE, STEP, latents, use_angle=False) == [100]


def test_no_candidate_within_the_angle_falls_back_to_the_nearest(caplog):
    latents = [[-2.0, 0.0], [-0.5, 0.2], [0.0, -1.0]]  # all behind or beside the source
    with caplog.at_level(logging.INFO, logger="slicepick.strategies.ggs"):
        assert choose(SOURCE, STEP, latents, angular_threshold=0.5) == [101]
    assert "1 nearest-sample fallbacks" in caplog.text


def test_more_suggestions_than_sources_continue_each_walk():
    z = [[0.0, 0.0], [10.0, 0.0]]
    z_prime = [[0.0, 0.1], [10.0, -0.1]]  # source 0 looks up, source 1 looks down
    latents = [[0.0, 1.0], [0.0, 2.0], [0.0, 3.0], [10.0, -1.0], [10.0, -2.0], [0.0, -0.5], [10.0, 0.5]]
    # pass 1: each source's nearest in its cone; pass 2: each source's next one; the nearer samples
    # on the wrong side (105, 106) are never taken while the cones have candidates
    got = choose(z, z_prime, latents, k=4)
    assert sorted(got) == [100, 101, 103, 104]
    assert set(got[:2]) == {100, 103}
    # cones run dry: source 1 falls back to its nearest free sample (106), then source 0 to 105
    assert sorted(choose(z, z_prime, latents, k=6)) == [100, 101, 102, 103, 104, 106]
    assert sorted(choose(z, z_prime, latents, k=7)) == list(range(100, 107))


def test_fewer_suggestions_than_sources_take_one_each_from_the_first_sources():
    z = [[0.0, 0.0], [10.0, 0.0], [20.0, 0.0]]
    z_prime = [[0.1, 0.0], [10.1, 0.0], [20.1, 0.0]]
    latents = [[1.0, 0.0], [11.0, 0.0], [21.0, 0.0]]
    got = choose(z, z_prime, latents, k=2, seed=4)
    first_two = np.random.default_rng(4).permutation(3)[:2]  # the seeded order of turns
    assert got == [100 + int(s) for s in first_two]


def test_two_sources_never_share_a_suggestion():
    z = [[0.0, 0.0], [0.0, 0.2]]
    z_prime = [[0.1, 0.0], [0.1, 0.2]]
    latents = [[1.0, 0.1],   # 100: first choice of both
               [2.0, 0.1]]   # 101
    for seed in range(5):
        got = choose(z, z_prime, latents, k=2, seed=seed)
        assert sorted(got) == [100, 101]


def random_latent_space(seed, n_sources, n_pool):
    """Sources z, their steps z' (small, random directions) and a pool of latents, all 3-D."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n_sources, 3))
    return z, z + 0.01 * rng.normal(size=(n_sources, 3)), rng.normal(size=(n_pool, 3))


def test_deterministic_for_a_seed():
    z, z_prime, latents = random_latent_space(7, 6, 200)
    first = choose(z, z_prime, latents, k=15, seed=3)
    assert first == choose(z, z_prime, latents, k=15, seed=3)
    assert len(set(first)) == 15


def test_growing_neighbour_queries_match_a_full_sort():
    z, z_prime, latents = random_latent_space(0, 5, 300)
    full = choose(z, z_prime, latents, k=40, search_k=300)
    assert choose(z, z_prime, latents, k=40, search_k=1) == full
    assert choose(z, z_prime, latents, k=40, search_k=7) == full
    # single source, k = 1: the brute-force answer of Eq. 5-6
    direction = z_prime[0] - z[0]
    offsets = latents - z[0]
    cos = offsets @ direction / (np.linalg.norm(offsets, axis=1) * np.linalg.norm(direction))
    distance = np.linalg.norm(latents - z_prime[0], axis=1)
    expected = 100 + int(np.argmin(np.where(cos >= 0.5, distance, np.inf)))
    assert choose(z[:1], z_prime[:1], latents, search_k=2) == [expected]


def test_zero_gradient_uses_distance_alone():
    latents = [[-0.2, 0.0], [1.0, 0.0]]
    assert choose(SOURCE, SOURCE, latents) == [100]


def test_bad_requests_fail_clearly():
    with pytest.raises(ValueError, match="only 2 candidates"):
        choose(SOURCE, STEP, [[1.0, 0.0], [2.0, 0.0]], k=3)
    with pytest.raises(ValueError, match="no source samples"):
        choose(np.zeros((0, 2)), np.zeros((0, 2)), [[1.0, 0.0]])
    with pytest.raises(ValueError, match="use_angle"):
        ggs_params({"use_angle": "yes"})
    assert ggs_params({}) == {"eta": 1e-3, "latent_dim": 3, "angular_threshold": 0.5, "use_angle": True,
                              "search_k": 64}


# --- Eq. 3: the gradient step ----------------------------------------------------------------------

def _per_sample_loss(model, x, y):
    return dice_loss()(model(x), y[:, None].double()).item()


def test_gradient_step_climbs_the_loss_with_the_right_derivative():
    torch.manual_seed(0)
    model = build_unet(2, 3, (2, 2, 4, 4, 4, 2)).double().eval()
    x = torch.randn(3, 2, 16, 16, dtype=torch.float64)
    y = torch.randint(0, 3, (3, 16, 16))
    eta = 1e-3
    x_prime = gradient_step(model, x, y, eta)
    assert x_prime.dtype == torch.float64
    for i in range(3):
        xi, yi = x[i:i + 1], y[i:i + 1]
        gradient = (x_prime[i:i + 1] - xi) / eta
        loss = _per_sample_loss(model, xi, yi)
        assert _per_sample_loss(model, x_prime[i:i + 1], yi) > loss  # Eq. 3 moves towards a harder sample
        # the step is this sample's own gradient: the directional derivative along it is |grad|
        h = 1e-6
        d = gradient / gradient.norm()
        finite_difference = (_per_sample_loss(model, xi + h * d, yi) - loss) / h
        assert finite_difference == pytest.approx(gradient.norm().item(), rel=1e-3)
        # and it does not depend on the other samples of the batch
        alone = (gradient_step(model, xi, yi, eta) - xi) / eta
        torch.testing.assert_close(alone, gradient)


def test_latent_step_resolves_steps_below_float32_resolution():
    torch.manual_seed(0)
    vae = build_vae(1, 16, 16, 2, (2, 2, 2, 2)).eval()
    x = 1 + torch.rand(2, 1, 16, 16)  # float32 spacing in [1, 2) is 1.2e-7
    x_prime = x.double() + 1e-9 * torch.randn(2, 1, 16, 16, dtype=torch.float64)
    assert torch.equal(x_prime.float(), x)  # the step is lost in float32 ...
    step = latent_step(vae, x, x_prime)
    assert step.shape == (2, 2) and np.all(np.abs(step) > 0)  # ... but not in the latent step



def test_latent_step_follows_the_encoder_jacobian():
    """E(x') - E(x) in float64 is eta * J_E(x) g to first order; in float32 it would be rounding noise."""
    torch.manual_seed(1)
    unet = build_unet(2, 3, (2, 2, 4, 4, 4, 2)).eval()
    vae = build_vae(2, 16, 16, 3, (2, 4, 4, 8)).eval()
    x, y = torch.randn(4, 2, 16, 16), torch.randint(0, 3, (4, 16, 16))
    eta = 1e-3
    x_prime = gradient_step(unet, x, y, eta)
    step = latent_step(vae, x, x_prime)
    g = (x_prime - x.double()) / eta
    x64 = x.double().requires_grad_(True)
    z = encode_images(vae.double(), x64)  # (B, d); samples are independent in eval mode
    jacobian_times_g = torch.stack([(torch.autograd.grad(z[:, i].sum(), x64, retain_graph=True)[0] * g)
                                    .flatten(1).sum(1) for i in range(z.shape[1])], 1)
    np.testing.assert_allclose(step, eta * jacobian_times_g.detach().numpy(), rtol=1e-4, atol=0)

# --- the whole suggestion on a tiny store -----------------------------------------------------------

@pytest.fixture(scope="module")
def tiny(tiny_store, tmp_path_factory):
    root = tmp_path_factory.mktemp("ggs_store")
    store = tiny_store
    torch.manual_seed(0)
    vae = build_vae(4, 32, 32, 3, (4, 8, 8, 16)).eval()  # untrained: the plumbing is under test
    save_vae(root / "vae.pt", vae)
    np.save(root / "latents.npy", encode(vae, store, np.arange(len(store.images))))
    unet = build_unet(4, 4, (4, 4, 8, 8, 8, 4)).eval()
    return store, unet, {"vae": str(root / "vae.pt"), "latents": str(root / "latents.npy")}


def _context(tiny, seed=0, params=None, inputs=None):
    store, unet, paths = tiny
    pool = store.pool_ids
    annotated = pool[::6]
    return SuggestionContext(store, annotated, np.setdiff1d(pool, annotated), annotated[-4:], 0,
                             np.random.default_rng(seed), params or {}, unet, "cpu",
                             paths if inputs is None else inputs)


def test_suggest_on_a_tiny_store(tiny):
    ggs = get_strategy("ggs")
    assert ggs.USES_MODEL is True
    ctx = _context(tiny)
    got = ggs.suggest(9, ctx)  # 9 > 4 sources
    assert len(got) == 9 and len(set(got)) == 9
    assert set(got) <= set(ctx.unannotated.tolist()) and not set(got) & set(ctx.annotated.tolist())
    assert got == ggs.suggest(9, _context(tiny))
    assert ggs.suggest(0, ctx) == []
    with pytest.raises(ValueError, match="unannotated samples remain"):
        ggs.suggest(len(ctx.unannotated) + 1, ctx)


def test_suggest_checks_its_inputs(tiny):
    ggs = get_strategy("ggs")
    with pytest.raises(ValueError, match="inputs \\['latents'\\] missing"):
        ggs.suggest(2, _context(tiny, inputs={"vae": tiny[2]["vae"]}))
    with pytest.raises(ValueError, match="latent_dim 10"):
        ggs.suggest(2, _context(tiny, params={"latent_dim": 10}))


# --- the latent-space figure -----------------------------------------------------------------------

@pytest.mark.parametrize("d", [2, 3])
def test_latent_space_figure(tmp_path, d):
    rng = np.random.default_rng(0)
    pool_ids = np.arange(50, 110)
    rounds = {0: [50, 51, 52], 1: [60, 61, 62], 2: [70, 71, 72]}
    plot_latent_space(rng.normal(size=(60, d)), pool_ids, rounds, tmp_path / "z.png", tmp_path / "z.pdf", seed=0)
    assert (tmp_path / "z.png").stat().st_size > 0 and (tmp_path / "z.pdf").stat().st_size > 0
    with pytest.raises(ValueError, match="not in the pool"):
        plot_latent_space(rng.normal(size=(60, d)), pool_ids, {0: [1]}, tmp_path / "z.png", tmp_path / "z.pdf")
