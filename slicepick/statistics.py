"""Significance tests behind the paper's comparison tables (GGS paper, Tables 3-5).

Input everywhere: the tidy metrics table (``reporting.METRIC_COLUMNS``: dataset, method, seed,
round, fraction, n_annotated, case, region, dice, hd95), one row per (method, seed, round, test
case, region). A budget is a ``fraction`` of the pool; the full-data reference (``full``) has
fraction 1 and is shown beside every budget.

What is paired: two methods at one budget and region are compared over the test cases; each
case's value is its mean over the seeds of the method (so n = number of test cases). Test:
Wilcoxon signed-rank, two-sided (SciPy), zero differences dropped (Wilcoxon's convention).

The dependency is one-way: :mod:`slicepick.reporting` lays the tests out in tables and imports this
module; nothing here imports reporting.
"""
from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd
from scipy.stats import wilcoxon

REFERENCE_METHODS = ("full",)  # trained on the whole pool: fraction 1, shown beside every budget
UPPER_REFERENCES = ("oracle", *REFERENCE_METHODS)  # shown beside the methods, never competing with them
HIGHER_IS_BETTER = {"dice": True, "hd95": False}
TEST_COLUMNS = ["method_a", "method_b", "fraction", "region", "metric", "n_cases", "mean_a", "mean_b",
                 "statistic", "p_value"]


def at_budget(metrics: pd.DataFrame, fraction: float) -> pd.DataFrame:
    """Rows of one budget (fractions compared with a tolerance: they come from float config)."""
    return metrics[np.isclose(metrics.fraction.to_numpy(float), fraction, rtol=0, atol=1e-9)]


def per_case(metrics: pd.DataFrame, method: str, fraction: float, region: str, metric: str = "dice") -> pd.Series:
    """One value per test case (index: case): the mean over the method's seeds."""
    rows = at_budget(metrics[(metrics.method == method) & (metrics.region == region)], fraction)
    if rows.empty:
        raise ValueError(f"no {metric} values for method '{method}', region '{region}' at fraction {fraction:g}")
    return rows.groupby("case")[metric].mean()


def wilcoxon_paired(metrics: pd.DataFrame, method_a: str, method_b: str, *, fraction: float, region: str,
                    metric: str = "dice") -> dict:
    """Wilcoxon signed-rank test of ``method_a`` against ``method_b``, paired over test cases.

    Returns method_a, method_b, fraction, region, metric, n_cases, mean_a, mean_b, statistic, p_value.
    """
    a = per_case(metrics, method_a, fraction, region, metric)
    b = per_case(metrics, method_b, fraction, region, metric)
    if set(a.index) != set(b.index):
        raise ValueError(f"{method_a} and {method_b} were evaluated on different test cases at fraction "
                         f"{fraction:g}: {sorted(set(a.index) ^ set(b.index))}")
    b = b.loc[a.index]
    differences = a.to_numpy() - b.to_numpy()
    if np.all(differences == 0):  # no signed rank at all: no evidence of a difference
        statistic, p_value = 0.0, 1.0
    else:
        result = wilcoxon(a.to_numpy(), b.to_numpy(), alternative="two-sided", zero_method="wilcox")
        statistic, p_value = float(result.statistic), float(result.pvalue)
    return {"method_a": method_a, "method_b": method_b, "fraction": fraction, "region": region, "metric": metric,
            "n_cases": len(a), "mean_a": float(a.mean()), "mean_b": float(b.mean()),
            "statistic": statistic, "p_value": p_value}


def ranked_methods(metrics: pd.DataFrame, fraction: float, region: str, metric: str = "dice",
                   exclude=UPPER_REFERENCES) -> list[str]:
    """Methods at this budget, best first by mean over seeds and cases (ties by name)."""
    rows = at_budget(metrics[(metrics.region == region) & ~metrics.method.isin(exclude)], fraction)
    means = rows.groupby("method")[metric].mean()
    sign = -1 if HIGHER_IS_BETTER[metric] else 1
    return sorted(means.index, key=lambda m: (sign * means[m], m))


def two_best(metrics: pd.DataFrame, fraction: float, region: str) -> tuple[str, str]:
    """The two best methods by mean Dice at this budget and region, oracle and full excluded."""
    ranked = ranked_methods(metrics, fraction, region, "dice")
    if len(ranked) < 2:
        raise ValueError(f"fewer than two competing methods at fraction {fraction:g} for region {region}: {ranked}")
    return ranked[0], ranked[1]


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (same order as given)."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p, kind="stable")
    scaled = (len(p) - np.arange(len(p))) * p[order]
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return adjusted


def pairwise_wilcoxon(metrics: pd.DataFrame, fraction: float, region: str, metric: str = "dice",
                      methods=None) -> pd.DataFrame:
    """Every pair of methods at one budget and region, with Holm-adjusted p-values (``p_holm``).

    ``methods``: which to compare (default: all at this budget except the upper references).
    """
    if methods is None:
        methods = ranked_methods(metrics, fraction, region, metric)
    rows = [wilcoxon_paired(metrics, a, b, fraction=fraction, region=region, metric=metric)
            for a, b in combinations(methods, 2)]
    table = pd.DataFrame(rows, columns=TEST_COLUMNS)
    table["p_holm"] = holm(table.p_value) if len(table) else []
    return table
