"""What a strategy sees when it suggests (shared by every strategy module)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class SuggestionContext:
    store: Any  # slicepick.data.prepare.SliceStore
    annotated: np.ndarray  # sample ids already annotated (the current training set)
    unannotated: np.ndarray  # pool sample ids not yet annotated (candidates)
    last_added: np.ndarray  # ids added in the latest round (GGS's gradient sources)
    round: int  # the round whose model is given; suggestions join round + 1
    rng: np.random.Generator  # the only source of randomness, derived from the seed
    params: dict = field(default_factory=dict)  # the method's config block
    model: Any = None  # current segmentation model (eval mode), None for model-free methods
    device: Any = "cpu"
    inputs: dict = field(default_factory=dict)  # extra files of the method (e.g. VAE latents)


def check_request(k: int, ctx: SuggestionContext) -> None:
    """Every strategy's contract: k distinct unannotated ids, and k must fit the pool."""
    if k < 0:
        raise ValueError(f"cannot suggest a negative number of samples ({k})")
    if k > len(ctx.unannotated):
        raise ValueError(f"asked for {k} suggestions but only {len(ctx.unannotated)} unannotated samples remain")


def random_start(pool_ids: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """The seeded random round-0 set shared by all iterative methods of a seed."""
    if not 1 <= n <= len(pool_ids):
        raise ValueError(f"initial selection of {n} samples from a pool of {len(pool_ids)}")
    return np.sort(rng.choice(np.asarray(pool_ids), size=n, replace=False))


# Keys every method block may hold besides the method's own parameters (see config/schema.yaml).
SHARED_KEYS = ("module", "epochs")


def with_defaults(method: str, params: dict | None, defaults: dict) -> dict:
    """A method's parameters: its config block over ``defaults``; an unknown key lists the valid ones."""
    params = dict(params or {})
    unknown = sorted(set(params) - set(defaults) - set(SHARED_KEYS))
    if unknown:
        raise ValueError(f"{method}: unknown parameter(s) {unknown} (allowed: {', '.join([*defaults, *SHARED_KEYS])})")
    return {**defaults, **{k: v for k, v in params.items() if k in defaults}}
