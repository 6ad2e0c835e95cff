"""full: one model per seed trained on the whole pool, the upper reference."""
from __future__ import annotations

import numpy as np

from slicepick.strategies.base import SuggestionContext

SINGLE_ROUND = True
USES_MODEL = False
NEEDS_GROUND_TRUTH = True  # the whole pool's labels: simulation only, refused by annotate mode


def initial_selection(ctx: SuggestionContext, n: int) -> np.ndarray:
    return np.sort(np.asarray(ctx.unannotated))


def suggest(k: int, ctx: SuggestionContext) -> list[int]:
    raise RuntimeError("full trains once on the whole pool and never suggests")
