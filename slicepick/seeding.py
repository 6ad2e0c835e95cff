"""Derived random streams: randomness comes only from the seed wildcard."""
from __future__ import annotations

import zlib

import numpy as np


def stream_seed(*keys: int | str) -> int:
    """A 32-bit seed derived from (seed, method, round, ...); strings hash stably."""
    entropy = [k if isinstance(k, int) else zlib.crc32(str(k).encode()) for k in keys]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def rng_for(*keys: int | str) -> np.random.Generator:
    return np.random.default_rng(stream_seed(*keys))
