"""Tables and figures of the allocation study, from its tidy metrics table.

What is paired in every test: two settings of one factor (selection, interpolation, or the
number of volumes s at one budget) with everything else fixed, over the test cases; each case's
value is its Dice averaged over the evaluated regions and over the seeds (n = test cases).
Wilcoxon signed-rank, two-sided, zero differences dropped (as ``slicepick.statistics``), and
Holm's correction over every test of one table (the table is the family).
"""
from __future__ import annotations

from itertools import combinations
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy.stats import wilcoxon  # noqa: E402

from slicepick.allocation.grid import METRIC_COLUMNS, method_label  # noqa: E402
from slicepick.allocation.interpolation import INTERPOLATIONS  # noqa: E402
from slicepick.files import write_csv  # noqa: E402
from slicepick.statistics import holm  # noqa: E402

TEST_COLUMNS = ["n_cases", "mean_a", "mean_b", "statistic", "p_value", "p_holm"]


def collect(paths, out_csv) -> pd.DataFrame:
    """One tidy table of every (model, cell, seed, method, interpolation, case, region)."""
    metrics = pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)
    missing = [c for c in METRIC_COLUMNS if c not in metrics.columns]
    if missing:
        raise ValueError(f"allocation aggregate: metrics files lack columns {missing}")
    metrics = metrics[METRIC_COLUMNS].sort_values(METRIC_COLUMNS[1:11]).reset_index(drop=True)
    write_csv(metrics, out_csv)
    return metrics


def with_method(metrics: pd.DataFrame) -> pd.DataFrame:
    return metrics.assign(method=[method_label(s, a) for s, a in zip(metrics.selection, metrics.allocation)])


def case_values(rows: pd.DataFrame) -> pd.Series:
    """Per test case: Dice averaged over regions and seeds."""
    return rows.groupby("case").dice.mean()


def paired_test(a: pd.Series, b: pd.Series) -> dict:
    if set(a.index) != set(b.index):
        raise ValueError(f"paired test over different test cases: {sorted(set(a.index) ^ set(b.index))}")
    b = b.loc[a.index]
    diff = a.to_numpy() - b.to_numpy()
    if np.all(diff == 0):
        statistic, p = 0.0, 1.0
    else:
        res = wilcoxon(a.to_numpy(), b.to_numpy(), alternative="two-sided", zero_method="wilcox")
        statistic, p = float(res.statistic), float(res.pvalue)
    return {"n_cases": len(a), "mean_a": float(a.mean()), "mean_b": float(b.mean()), "statistic": statistic,
            "p_value": p}


def seed_spread(rows: pd.DataFrame) -> str:
    """'mean ± std (n seeds)' of the per-seed Dice (each seed: mean over cases and regions), with
    '†k' when k of those seeds' models are degenerate (untrained)."""
    per_seed = rows.groupby("seed").dice.mean()
    text = f"{per_seed.mean():.3f} ± {per_seed.std(ddof=1) if len(per_seed) > 1 else 0.0:.3f} ({len(per_seed)})"
    degenerate = int(rows.groupby("seed").degenerate.any().sum()) if "degenerate" in rows else 0
    return f"{text} †{degenerate}" if degenerate else text


def factor_table(metrics: pd.DataFrame, factor: str, keys: list[str], order=()) -> pd.DataFrame:
    """Every pair of levels of ``factor`` within each group of ``keys``: means and the paired test.
    Levels named in ``order`` come first, in that order (the reference, e.g. random or none, is a)."""
    rows = []
    rank = {level: i for i, level in enumerate(order)}
    for group, sub in metrics.groupby(keys, sort=True):
        levels = sorted(sub[factor].unique(), key=lambda v: (rank.get(v, len(rank)), v))
        for a, b in combinations(levels, 2):
            ra, rb = sub[sub[factor] == a], sub[sub[factor] == b]
            test = paired_test(case_values(ra), case_values(rb))
            rows.append({**dict(zip(keys, group)), f"{factor}_a": a, f"{factor}_b": b,
                         "dice_a": seed_spread(ra), "dice_b": seed_spread(rb), **test})
    table = pd.DataFrame(rows)
    if len(table):
        table["p_holm"] = holm(table.p_value.to_numpy())
    return table


def selection_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Selections (and UAL's free allocation) at equal budget and s, without interpolation."""
    m = with_method(metrics[metrics.interpolation == "none"])
    return factor_table(m, "method", ["model", "budget", "n_volumes", "slices_per_volume"],
                        order=["random", "fixed_interval", "ual", "ual_free"])


def interpolation_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Interpolation on/off (and which) for each selection at equal budget and s."""
    m = with_method(metrics)
    return factor_table(m, "interpolation", ["model", "budget", "n_volumes", "slices_per_volume", "method"],
                        order=INTERPOLATIONS)


def allocation_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per budget and model (random selection, no interpolation): the best s, tested against every other s."""
    m = metrics[(metrics.selection == "random") & (metrics.allocation == "equal") & (metrics.interpolation == "none")]
    rows = []
    for (model, budget), sub in m.groupby(["model", "budget"], sort=True):
        means = sub.groupby("n_volumes").dice.mean()
        best = int(means.idxmax())
        for s in sorted(means.index):
            if s == best:
                continue
            ra, rb = sub[sub.n_volumes == best], sub[sub.n_volumes == s]
            rows.append({"model": model, "budget": budget, "best_s": best, "best_rho": round(budget / best, 2),
                         "other_s": int(s), "other_rho": round(budget / s, 2), "dice_best": seed_spread(ra),
                         "dice_other": seed_spread(rb), **paired_test(case_values(ra), case_values(rb))})
    table = pd.DataFrame(rows)
    if len(table):
        table["p_holm"] = holm(table.p_value.to_numpy())
    return table


CAPTIONS = {
    "selection": "Slice selection inside a volume at equal budget B and number of volumes s (no interpolation)",
    "interpolation": "Mask interpolation between annotated slices, per selection, at equal B and s",
    "allocation": "Best number of volumes s per budget (random selection, no interpolation) against every other s",
}


def write_table(table: pd.DataFrame, name: str, out_csv, out_md, out_tex) -> None:
    """CSV, Markdown and LaTeX, with a caption saying what is paired."""
    caption = (f"{CAPTIONS[name]}. Dice: mean ± std over seeds (n seeds), each seed averaged over test cases and "
               "regions. Two-sided Wilcoxon signed-rank test paired over test cases (each case: mean over regions "
               "and seeds), n = test cases; p_holm: Holm's correction over all tests of this table. †k: k of the seeds' "
               "models are degenerate (foreground on more than half of the test background, or none: not trained), "
               "so that comparison says nothing about the factor.")
    shown = table.copy()
    for col in ("mean_a", "mean_b", "statistic"):
        if col in shown:
            shown[col] = shown[col].map(lambda v: f"{v:.3f}")
    for col in ("p_value", "p_holm"):
        if col in shown:
            shown[col] = shown[col].map(lambda v: f"{v:.3g}")
    table.to_csv(out_csv, index=False)
    Path(out_md).write_text(f"{caption}\n\n{shown.to_markdown(index=False) if len(shown) else '(no comparisons)'}\n")
    latex = shown.to_latex(index=False, escape=True, caption=caption, label=f"tab:allocation_{name}")
    Path(out_tex).write_text(latex.replace("±", r"$\pm$"))


def _save(fig, png, pdf) -> None:
    fig.savefig(png, dpi=150, bbox_inches="tight")
    fig.savefig(pdf, bbox_inches="tight")
    plt.close(fig)


def heatmap(metrics: pd.DataFrame, model: str, method: str, png, pdf) -> None:
    """Mean Dice over seeds (and cases and regions) on the grid s x rho, without interpolation;
    each cell is one budget B = s * rho (written in it)."""
    m = with_method(metrics)
    sub = m[(m.model == model) & (m.method == method) & (m.interpolation == "none")]
    grid = sub.groupby(["n_volumes", "slices_per_volume"]).dice.mean().unstack()
    budgets = sub.groupby(["n_volumes", "slices_per_volume"]).budget.first().unstack()
    untrained = sub.groupby(["n_volumes", "slices_per_volume"]).degenerate.any().unstack().fillna(False).astype(bool)
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * grid.shape[1], 1.0 + 0.7 * grid.shape[0]))
    im = ax.imshow(grid.to_numpy(float), cmap="viridis", origin="lower", vmin=0, vmax=1, aspect="auto")
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            v = grid.iat[i, j]
            if np.isfinite(v):
                mark = "†" if untrained.iat[i, j] else ""
                ax.text(j, i, f"{v:.2f}{mark}\nB={int(budgets.iat[i, j])}", ha="center", va="center", fontsize=7,
                        color="white" if v < 0.6 else "black")
    ax.set_xticks(range(grid.shape[1]), [f"{r:g}" for r in grid.columns])
    ax.set_yticks(range(grid.shape[0]), [str(s) for s in grid.index])
    ax.set_xlabel("slices per volume ρ")
    ax.set_ylabel("volumes s")
    note = "; †: a degenerate (untrained) model" if sub.degenerate.any() else ""
    ax.set_title(f"{model} U-Net, {method}: mean Dice over {sub.seed.nunique()} seed(s){note}", fontsize=9)
    fig.colorbar(im, ax=ax, label="Dice")
    _save(fig, png, pdf)


def dice_vs_volumes(metrics: pd.DataFrame, model: str, png, pdf) -> None:
    """Dice against s, one line per budget (random selection, no interpolation); dots are seeds."""
    sub = metrics[(metrics.model == model) & (metrics.selection == "random") & (metrics.allocation == "equal")
                  & (metrics.interpolation == "none")]
    per_seed = sub.groupby(["budget", "n_volumes", "seed"], as_index=False).dice.mean()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for budget, rows in per_seed.groupby("budget"):
        mean = rows.groupby("n_volumes").dice.mean()
        line, = ax.plot(mean.index, mean.to_numpy(), marker="o", label=f"B = {budget}")
        ax.scatter(rows.n_volumes, rows.dice, s=10, alpha=0.5, color=line.get_color())
    ax.set_xticks(sorted(per_seed.n_volumes.unique()))
    ax.set_xlabel("volumes s (ρ = B / s slices each)")
    ax.set_ylabel("Dice (mean over cases and regions)")
    ax.set_title(f"{model} U-Net, random selection; dots: seeds", fontsize=9)
    ax.legend(fontsize=8)
    _save(fig, png, pdf)
