"""random: uniform over the unannotated pool (the baseline)."""
from __future__ import annotations

import numpy as np

from slicepick.strategies.base import SuggestionContext, check_request

USES_MODEL = False


def suggest(k: int, ctx: SuggestionContext) -> list[int]:
    check_request(k, ctx)
    return [int(i) for i in ctx.rng.choice(np.asarray(ctx.unannotated), size=k, replace=False)]
