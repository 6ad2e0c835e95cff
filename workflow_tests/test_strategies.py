"""The strategy contract, parametrised over the registry, and each strategy's own behaviour."""
import numpy as np
import pytest
import torch

from slicepick.seeding import rng_for
from slicepick.strategies import available, declared, get_strategy
from slicepick.strategies.base import SuggestionContext, random_start
from slicepick.strategies.oracle import per_sample_dice

ITERATIVE = [name for name in available() if not declared(name, "SINGLE_ROUND", False)]


@pytest.fixture(scope="module")
def method_inputs(tiny_store, tmp_path_factory):
    """A briefly trained VAE, the latents of every stored slice and ClsMC's ranking, for latent-space methods."""
    from slicepick.vae import encode, save_vae, train_vae

    folder = tmp_path_factory.mktemp("vae")
    vae = train_vae(tiny_store, tiny_store.pool_ids, latent_dim=3, channels=[4, 8, 8, 8], epochs=1, batch_size=8)
    save_vae(folder / "model.pt", vae)
    np.save(folder / "latents.npy", encode(vae, tiny_store, np.arange(len(tiny_store.index))))
    get_strategy("clsmc").write_ranking(folder / "ranking.npy", tiny_store.pool_ids, folder / "latents.npy", {})
    return {"vae": str(folder / "model.pt"), "latents": str(folder / "latents.npy"), "ranking": str(folder / "ranking.npy")}


@pytest.fixture(scope="module")
def method_model(tiny_store, tiny_spec, tmp_path_factory):
    """Each strategy's own model (its train_round, or the shared U-Net step), one short epoch."""
    from slicepick.training import TrainConfig, train_unet_round

    def train(name, annotated):
        step = getattr(get_strategy(name), "train_round", train_unet_round)
        folder = tmp_path_factory.mktemp(name)
        cfg = TrainConfig(epochs=1, batch_size=8, augment={"enabled": False}, seed=0)
        model, _ = step(tiny_store, annotated, None, tiny_spec, cfg, device="cpu", log_csv=folder / "log.csv",
                        checkpoint_dir=folder, run_id=name, params={})
        return model.eval()

    return train


class PerfectOnOddIds(torch.nn.Module):
    """Predicts the reference on some samples and background elsewhere: oracle must pick the latter."""

    def __init__(self, store, good_ids):
        super().__init__()
        self.store, self.good = store, set(int(i) for i in good_ids)
        self.lookup = {}

    def forward(self, images):
        out = []
        for img in images:
            sid = next(i for i in range(len(self.store.images)) if np.array_equal(self.store.images[i], img.numpy()))
            label = torch.as_tensor(np.array(self.store.labels[sid]), dtype=torch.long)
            if sid not in self.good:
                label = torch.zeros_like(label)
            out.append(torch.nn.functional.one_hot(label, 4).permute(2, 0, 1).float())
        return torch.stack(out)


def _ctx(store, annotated, seed=0, model=None, inputs=None):
    pool = store.pool_ids
    return SuggestionContext(store, np.asarray(annotated), np.setdiff1d(pool, annotated), np.asarray(annotated), 0,
                             rng_for(seed, "test"), {}, model, "cpu", inputs or {})


@pytest.mark.parametrize("name", ITERATIVE)
def test_contract(name, tiny_store, method_model, method_inputs):
    """k distinct pool ids, none annotated, deterministic for a seed, a clear error past the pool."""
    strategy = get_strategy(name)
    annotated = tiny_store.pool_ids[:8]
    model = method_model(name, annotated)
    ids = strategy.suggest(6, _ctx(tiny_store, annotated, model=model, inputs=method_inputs))
    assert len(ids) == 6 and len(set(ids)) == 6
    assert not set(ids) & set(annotated.tolist())
    assert set(ids) <= set(tiny_store.pool_ids.tolist())
    assert ids == strategy.suggest(6, _ctx(tiny_store, annotated, model=model, inputs=method_inputs))
    with pytest.raises(ValueError, match="unannotated samples remain"):
        strategy.suggest(len(tiny_store.pool_ids), _ctx(tiny_store, annotated, model=model, inputs=method_inputs))


def test_random_differs_across_seeds(tiny_store):
    strategy = get_strategy("random")
    a = strategy.suggest(8, _ctx(tiny_store, tiny_store.pool_ids[:3], seed=0))
    b = strategy.suggest(8, _ctx(tiny_store, tiny_store.pool_ids[:3], seed=1))
    assert a != b


def test_oracle_picks_the_lowest_dice_samples(tiny_store):
    pool = tiny_store.pool_ids
    labels = np.array(tiny_store.labels[pool])
    has_tumour = pool[labels.reshape(len(pool), -1).max(1) > 0]
    bad = has_tumour[:4]  # the model misses the tumour here (Dice 0); elsewhere it is perfect (Dice 1)
    model = PerfectOnOddIds(tiny_store, np.setdiff1d(pool, bad))
    ids = get_strategy("oracle").suggest(4, _ctx(tiny_store, [], model=model))
    assert sorted(ids) == sorted(bad.tolist())


class PredictsBackground(torch.nn.Module):
    """Background everywhere: on tumour-free slices every Dice is 1, a tie."""

    def forward(self, images):
        logits = torch.zeros(len(images), 4, *images.shape[2:])
        logits[:, 0] = 1.0
        return logits


def test_oracle_breaks_ties_with_the_round_generator(tiny_store):
    pool = tiny_store.pool_ids
    labels = np.array(tiny_store.labels[pool])
    tumour_free = pool[labels.reshape(len(pool), -1).max(1) == 0]
    assert len(tumour_free) >= 20  # enough ties for the checks below to mean something
    annotated = np.setdiff1d(pool, tumour_free)  # the candidates are exactly the tumour-free slices
    oracle = get_strategy("oracle")

    def pick(seed):
        return oracle.suggest(5, _ctx(tiny_store, annotated, seed=seed, model=PredictsBackground()))

    assert pick(0) == pick(0)  # reproducible for the same generator
    assert sorted(pick(0)) != sorted(tumour_free[:5].tolist())  # not the lowest ids
    assert len({tuple(sorted(pick(s))) for s in range(4)}) > 1  # the generator decides


def test_per_sample_dice_by_hand():
    ref = np.zeros((2, 4, 4), np.uint8)
    ref[:, :2, :2] = 1
    pred = ref.copy()
    pred[1, 0, :] = 1  # sample 1: 4 reference voxels, 6 predicted, 4 shared: Dice 8/10 for class 1
    d = per_sample_dice(pred, ref, 2)
    assert d[0] == pytest.approx(1.0) and d[1] == pytest.approx(0.8)


def test_unknown_strategy_lists_the_choices():
    with pytest.raises(ValueError, match="unknown strategy 'randm'; available: .*random"):
        get_strategy("randm")


def test_random_start_is_seeded_and_full_takes_the_pool(tiny_store):
    pool = tiny_store.pool_ids
    assert np.array_equal(random_start(pool, 5, rng_for(0, "start")), random_start(pool, 5, rng_for(0, "start")))
    assert not np.array_equal(random_start(pool, 5, rng_for(0, "start")), random_start(pool, 5, rng_for(1, "start")))
    full = get_strategy("full").initial_selection(_ctx(tiny_store, []), 5)
    assert np.array_equal(full, np.sort(pool))
    assert declared("full", "SINGLE_ROUND") is True
