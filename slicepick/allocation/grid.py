"""The (budget, number of volumes) grid: which cells exist, and how a budget is split over volumes.

A cell is (B, s): B annotated slices over s volumes, rho = B / s slices per volume. When s does
not divide B, the remainder r = B mod s goes one slice each to the first r chosen volumes (in the
seeded order in which they were drawn), so the budget is met exactly and no two volumes differ by
more than one slice.
"""
from __future__ import annotations

import math

# The study's tidy tables, here and not in experiment.py so that the aggregation job imports no torch
METRIC_COLUMNS = ["dataset", "model", "budget", "n_volumes", "slices_per_volume", "selection", "allocation",
                  "interpolation", "seed", "case", "region", "dice", "hd95", "degenerate"]
SELECTION_COLUMNS = ["budget", "n_volumes", "seed", "selection", "allocation", "case", "sample_id", "z", "position"]


def slices_per_volume(budget: int, n_volumes: int) -> list[int]:
    """Slices of each of the s volumes, in draw order; sums to ``budget`` exactly."""
    if n_volumes < 1 or budget < n_volumes:
        raise ValueError(f"allocation cell B={budget}, s={n_volumes}: need 1 <= s <= B")
    base, extra = divmod(budget, n_volumes)
    return [base + 1 if i < extra else base for i in range(n_volumes)]


def cells(alloc_cfg: dict) -> list[tuple[int, int]]:
    """Every (B, s) of the config: the budgets times the numbers of volumes, or the explicit cells."""
    if alloc_cfg.get("cells"):
        return sorted({(int(b), int(s)) for b, s in alloc_cfg["cells"]})
    return sorted((int(b), int(s)) for b in alloc_cfg["budgets"] for s in alloc_cfg["n_volumes"])


def _own_list(alloc_cfg: dict, model: str | None, key: str) -> list[str] | None:
    """``key`` (selections | interpolations) of the model's ``training_<model>`` block, if it lists one."""
    return (alloc_cfg.get(f"training_{model}") or {}).get(key) if model else None


def model_selections(alloc_cfg: dict, model: str | None = None) -> list[str]:
    """The selections ``model`` is trained on: its block's ``selections``, else the study's."""
    return list(_own_list(alloc_cfg, model, "selections") or alloc_cfg["selections"])


def model_interpolations(alloc_cfg: dict, model: str | None = None) -> list[str]:
    """The interpolations ``model`` is trained with: its block's ``interpolations``, else the study's."""
    return list(_own_list(alloc_cfg, model, "interpolations") or alloc_cfg["interpolations"])


def methods(alloc_cfg: dict, model: str | None = None) -> list[tuple[str, str]]:
    """(selection, allocation) pairs: every selection with equal allocation, and ual with the free ones.
    With ``model``, only the selections that model is trained on (every model's, for the planning job)."""
    selections = model_selections(alloc_cfg, model)
    out = [(sel, "equal") for sel in selections]
    if "ual" in selections:
        out += [("ual", a) for a in alloc_cfg.get("ual_allocations", ["equal"]) if a != "equal"]
    return out


def method_label(selection: str, allocation: str) -> str:
    """A method as named in tables and figures: the selection, or e.g. ``ual_free``."""
    return selection if allocation == "equal" else f"{selection}_{allocation}"


def method_names(alloc_cfg: dict, model: str | None = None) -> list[str]:
    return [method_label(sel, alloc) for sel, alloc in methods(alloc_cfg, model)]


def max_rho(budget: int, n_volumes: int) -> int:
    """The most slices any one volume gets in this cell."""
    return math.ceil(budget / n_volumes)


def config_errors(alloc_cfg: dict, n_train_volumes: int | None = None) -> list[str]:
    """Cells that cannot exist, judged from the config alone (one line each, naming the cell).

    ``n_train_volumes`` is known from the config only for the synthetic layout; for real data the
    planning job checks it against the prepared store (:func:`data_errors`).
    """
    lines = []
    for model in alloc_cfg.get("models", ()):
        for key in ("selections", "interpolations"):
            own = _own_list(alloc_cfg, model, key)
            extra = sorted(set(own) - set(alloc_cfg.get(key, ()))) if own else []
            if extra:
                lines.append(f"config: allocation.training_{model}.{key}: {extra} not in allocation.{key} "
                             f"{list(alloc_cfg[key])} (a model runs a subset of the study's {key})")
    for b, s in cells(alloc_cfg):
        if s > b:
            lines.append(f"config: allocation cell B={b}, s={s}: more volumes than slices in the budget (s > B)")
        elif n_train_volumes is not None and s > n_train_volumes:
            lines.append(f"config: allocation cell B={b}, s={s}: s is larger than the {n_train_volumes} training volumes")
    return lines


def data_errors(alloc_cfg: dict, slices_per_case: dict[str, int]) -> list[str]:
    """Cells the prepared data cannot hold: s above the training volumes, or rho above the
    non-blank slices of the smallest training volume (any volume may be drawn)."""
    lines = []
    n = len(slices_per_case)
    smallest = min(slices_per_case, key=lambda c: (slices_per_case[c], c))
    for b, s in cells(alloc_cfg):
        if s > b:
            lines.append(f"allocation cell B={b}, s={s}: more volumes than slices in the budget (s > B)")
        elif s > n:
            lines.append(f"allocation cell B={b}, s={s}: s is larger than the {n} training volumes")
        elif max_rho(b, s) > slices_per_case[smallest]:
            lines.append(f"allocation cell B={b}, s={s}: rho = {max_rho(b, s)} slices per volume is more than the "
                         f"{slices_per_case[smallest]} non-blank slices of training volume {smallest}")
    return lines
