"""Significance tests and the paper's comparison tables (GGS paper, Tables 3-5).

Input everywhere: the tidy metrics table (``reporting.METRIC_COLUMNS``: dataset, method, seed,
round, fraction, n_annotated, case, region, dice, hd95), one row per (method, seed, round, test
case, region). A budget is a ``fraction`` of the pool; the full-data reference (``full``) has
fraction 1 and is shown beside every budget.

What is paired: two methods at one budget and region are compared over the test cases; each
case's value is its mean over the seeds of the method (so n = number of test cases). Test:
Wilcoxon signed-rank, two-sided (SciPy), zero differences dropped (Wilcoxon's convention).
"""
from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import wilcoxon

from slicepick.reporting import REFERENCE_METHODS, UPPER_REFERENCES, method_order, summary_table

HIGHER_IS_BETTER = {"dice": True, "hd95": False}
_TEST_COLUMNS = ["method_a", "method_b", "fraction", "region", "metric", "n_cases", "mean_a", "mean_b",
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
    table = pd.DataFrame(rows, columns=_TEST_COLUMNS)
    table["p_holm"] = holm(table.p_value) if len(table) else []
    return table


def paper_table(metrics: pd.DataFrame, budgets, regions, hd_percentile: float = 95) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Tables 3-5 layout, and the tests behind its last row.

    Rows: methods (competitors, then oracle and full), then a p-value row. Columns: for each
    budget, Dice and HD per region, as 'mean ± std' over seeds (each seed: mean over test cases).
    The p-value row holds, per column, the Wilcoxon test between the two best competitors by
    mean Dice in that budget and region (the same pair for the HD column; a dash when fewer than
    two compete). Returns
    (table, tests) where tests has one row per column (``wilcoxon_paired`` fields).
    """
    summary = summary_table(metrics)
    hd = f"HD{hd_percentile:g}"
    columns, tests = [], []
    for fraction in budgets:
        for metric in ("dice", "hd95"):
            for region in regions:
                columns.append((fraction, metric, region))
    label = {c: f"{100 * c[0]:g}% {'Dice' if c[1] == 'dice' else hd + ' (mm)'} {c[2]}" for c in columns}
    table = {}
    for method in method_order(summary.method.unique()):
        s = summary[summary.method == method]
        row = {}
        for fraction, metric, region in columns:
            r = s[s.region == region] if method in REFERENCE_METHODS else at_budget(s[s.region == region], fraction)
            digits = 3 if metric == "dice" else 2
            mark = " †" if len(r) and r.n_degenerate.iloc[0] else ""  # a degenerate model among the seeds
            row[label[(fraction, metric, region)]] = (
                f"{r[f'{metric}_mean'].iloc[0]:.{digits}f} ± {r[f'{metric}_std'].iloc[0]:.{digits}f}{mark}"
                if len(r) else "–")
        table[method] = row
    p_row = {}
    for fraction, metric, region in columns:
        competitors = ranked_methods(metrics, fraction, region, "dice")
        if len(competitors) < 2:
            p_row[label[(fraction, metric, region)]] = "– (fewer than two methods)"
            continue
        a, b = competitors[:2]
        test = wilcoxon_paired(metrics, a, b, fraction=fraction, region=region, metric=metric)
        tests.append(test)
        p_row[label[(fraction, metric, region)]] = f"{test['p_value']:.3g} ({a} vs {b}, n={test['n_cases']})"
    table["p (Wilcoxon)"] = p_row
    out = pd.DataFrame.from_dict(table, orient="index")
    out.index.name = "method"
    return out.reset_index(), pd.DataFrame(tests, columns=_TEST_COLUMNS)


def write_paper_table(table: pd.DataFrame, out_csv, out_md, out_tex, hd_percentile: float = 95,
                      label: str = "tab:comparison") -> None:
    """CSV, Markdown and LaTeX of ``paper_table``'s table, with a caption saying what is paired."""
    caption = (f"Dice and HD{hd_percentile:g} (mm) per region at each annotated fraction of the pool: "
               "mean ± std over seeds (each seed: mean over test cases); full is trained on the whole pool. "
               "Last row: two-sided Wilcoxon signed-rank test between the two best methods by mean Dice "
               "(oracle and full excluded), paired over test cases (each case: mean over seeds), n = number of "
               "test cases. †: at least one seed's model is degenerate (foreground on more than half of the test "
               "background, or none at all).")
    table.to_csv(out_csv, index=False)
    Path(out_md).write_text(f"{caption}\n\n{table.to_markdown(index=False)}\n")
    latex = table.to_latex(index=False, escape=True, caption=caption, label=label)
    Path(out_tex).write_text(latex.replace("±", r"$\pm$").replace("–", "--"))
