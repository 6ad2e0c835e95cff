"""Aggregation, tables and figures from the per-round metrics files."""
from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from slicepick.statistics import (REFERENCE_METHODS, TEST_COLUMNS, UPPER_REFERENCES, at_budget,  # noqa: E402
                                  pairwise_wilcoxon, two_best, wilcoxon_paired)

METRIC_COLUMNS = ["dataset", "method", "seed", "round", "fraction", "n_annotated", "case", "region", "dice", "hd95",
                  "degenerate"]
DEGENERATE_MARK = "†"  # tables: a row with at least one degenerate model (metrics.csv column degenerate)


def method_order(methods) -> list[str]:
    """Display order: random, the other competitors by name, then oracle and full."""
    present = set(methods)
    competitors = sorted(present - set(UPPER_REFERENCES), key=lambda m: (m != "random", m))
    return competitors + [m for m in UPPER_REFERENCES if m in present]


def collect_metrics(paths, out_csv) -> pd.DataFrame:
    """One tidy table of every (method, seed, round, case, region)."""
    frames = [pd.read_csv(p) for p in paths]
    if not frames:
        raise ValueError("aggregate: no metrics files given")
    metrics = pd.concat(frames, ignore_index=True)
    missing = [c for c in METRIC_COLUMNS if c not in metrics.columns]
    if missing:
        raise ValueError(f"aggregate: metrics files lack columns {missing}")
    metrics = metrics[METRIC_COLUMNS].sort_values(["method", "seed", "round", "case", "region"])
    metrics.to_csv(out_csv, index=False)
    return metrics


def seed_means(metrics: pd.DataFrame) -> pd.DataFrame:
    """Mean over test cases for each (method, seed, budget, region): one value per seed."""
    keys = ["dataset", "method", "seed", "round", "fraction", "region"]
    if "degenerate" not in metrics.columns:  # metrics written before the flag existed
        metrics = metrics.assign(degenerate=False)
    return metrics.groupby(keys, as_index=False).agg(dice=("dice", "mean"), hd95=("hd95", "mean"),
                                                     n_annotated=("n_annotated", "mean"),
                                                     degenerate=("degenerate", "max"))


def summary_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds per method, budget and region (std of the per-seed case means)."""
    per_seed = seed_means(metrics)
    keys = ["method", "round", "fraction", "region"]
    out = per_seed.groupby(keys, as_index=False).agg(
        n_seeds=("seed", "nunique"), n_degenerate=("degenerate", "sum"), n_annotated=("n_annotated", "mean"),
        dice_mean=("dice", "mean"), dice_std=("dice", "std"), hd95_mean=("hd95", "mean"), hd95_std=("hd95", "std"))
    return out.fillna({"dice_std": 0.0, "hd95_std": 0.0})


def _pm(mean, std, digits):
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def wide_table(summary: pd.DataFrame, hd_percentile: float = 95) -> pd.DataFrame:
    """Rows: method and budget; columns: Dice and HD per region, as 'mean ± std'."""
    hd = f"HD{hd_percentile:g} (mm)"
    rows = []
    for (method, rnd, fraction), group in summary.groupby(["method", "round", "fraction"], sort=True):
        degenerate = int(group.n_degenerate.max())
        row = {"method": method + (f" {DEGENERATE_MARK}" if degenerate else ""), "annotated %": f"{100 * fraction:g}",
               "seeds": int(group.n_seeds.max()), "degenerate seeds": degenerate}
        for _, r in group.iterrows():
            row[f"Dice {r.region}"] = _pm(r.dice_mean, r.dice_std, 3)
            row[f"{hd} {r.region}"] = _pm(r.hd95_mean, r.hd95_std, 1)
        rows.append(row)
    return pd.DataFrame(rows)


def write_tables(summary: pd.DataFrame, out_csv, out_md, out_tex, hd_percentile: float = 95) -> None:
    summary.to_csv(out_csv, index=False)
    wide = wide_table(summary, hd_percentile)
    caption = ("Mean ± std over seeds (each seed: mean over test cases) of Dice and "
               f"HD{hd_percentile:g} in mm, per method and annotated fraction of the pool. "
               f"{DEGENERATE_MARK}: at least one seed's model is degenerate (foreground on more than half of the "
               "test background, or none at all).")
    Path(out_md).write_text(f"{caption}\n\n{wide.to_markdown(index=False)}\n")
    latex = wide.to_latex(index=False, escape=True, caption=caption, label="tab:summary")
    Path(out_tex).write_text(latex.replace("±", r"$\pm$"))


def plot_learning_curves(summary: pd.DataFrame, out_pdf, out_png, hd_percentile: float = 95,
                         per_seed: pd.DataFrame | None = None) -> None:
    """Dice and HD against annotated %, one column per region; band = std over seeds, clipped to the
    metric's range (Dice in [0, 1], HD >= 0); ``per_seed`` (``seed_means``) adds each seed as a dot."""
    regions = list(dict.fromkeys(summary.region))
    iterative = summary[~summary.method.isin(REFERENCE_METHODS)]
    methods = sorted(iterative.method.unique())
    palette = dict(zip(methods, sns.color_palette("tab10", max(len(methods), 1))))
    sns.set_theme(style="whitegrid", context="paper", font_scale=1.1)
    fig, axes = plt.subplots(2, len(regions), figsize=(4.2 * len(regions), 7), squeeze=False)
    for col, region in enumerate(regions):
        for row, (metric, label) in enumerate([("dice", "Dice"), ("hd95", f"HD{hd_percentile:g} (mm)")]):
            ax = axes[row, col]
            for method in methods:
                d = iterative[(iterative.method == method) & (iterative.region == region)].sort_values("fraction")
                x = 100 * d.fraction
                ax.plot(x, d[f"{metric}_mean"], marker="o", ms=4, label=method, color=palette[method])
                upper = 1.0 if metric == "dice" else np.inf
                ax.fill_between(x, np.clip(d[f"{metric}_mean"] - d[f"{metric}_std"], 0, upper),
                                np.clip(d[f"{metric}_mean"] + d[f"{metric}_std"], 0, upper),
                                alpha=0.18, color=palette[method], linewidth=0)
                if per_seed is not None:
                    dots = per_seed[(per_seed.method == method) & (per_seed.region == region)]
                    ax.scatter(100 * dots.fraction, dots[metric], s=8, alpha=0.6, color=palette[method],
                               linewidths=0)
            for ref in REFERENCE_METHODS:
                d = summary[(summary.method == ref) & (summary.region == region)]
                if len(d):
                    ax.axhline(float(d[f"{metric}_mean"].iloc[0]), color="black", ls="--", lw=1.2,
                               label=f"{ref} (100%)")
            ax.set_title(f"{region}: {label}")
            ax.set_xlabel("annotated slices (% of pool)")
            ax.set_ylabel(label)
            if metric == "dice":
                ax.set_ylim(0, 1)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(out_pdf)
    fig.savefig(out_png, dpi=150)
    plt.close(fig)


def _save(fig, out_pdf, out_png) -> None:
    fig.savefig(out_pdf)
    fig.savefig(out_png, dpi=150)
    plt.close(fig)


def plot_region_dice(metrics: pd.DataFrame, fraction: float, out_pdf, out_png) -> None:
    """Dice per region of every method at one budget, beside full (paper Fig. 7).

    Bars: mean over seeds of each seed's mean over test cases; whiskers: std over seeds; dots: seeds.
    """
    per_seed = seed_means(metrics)
    at = np.isclose(per_seed.fraction.to_numpy(float), fraction, rtol=0, atol=1e-9)
    shown = per_seed[at | per_seed.method.isin(REFERENCE_METHODS)]
    if shown.empty:
        raise ValueError(f"no metrics at fraction {fraction:g}")
    methods = method_order(shown.method.unique())
    sns.set_theme(style="whitegrid", context="paper", font_scale=1.1)
    regions = list(dict.fromkeys(metrics.region))  # the dataset's order (WT, TC, ET)
    fig, ax = plt.subplots(figsize=(1.2 + 0.5 * len(methods) * len(regions), 4))
    sns.barplot(shown, x="region", y="dice", hue="method", hue_order=methods, order=regions, errorbar="sd",
                palette="tab10", capsize=0.1, ax=ax)
    sns.stripplot(shown, x="region", y="dice", hue="method", hue_order=methods, order=regions, dodge=True,
                  palette="dark:black", size=3, legend=False, ax=ax)
    ax.set_ylim(0, 1)
    ax.set_ylabel("Dice")
    ax.set_title(f"Dice per region at {100 * fraction:g}% annotated (full: 100%); bars mean, whiskers std over seeds")
    ax.legend(title=None, ncol=min(len(methods), 4), loc="lower center", bbox_to_anchor=(0.5, 1.08), frameon=False)
    fig.tight_layout()
    _save(fig, out_pdf, out_png)


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
            mark = f" {DEGENERATE_MARK}" if len(r) and r.n_degenerate.iloc[0] else ""  # a degenerate seed's model
            row[label[(fraction, metric, region)]] = (
                f"{r[f'{metric}_mean'].iloc[0]:.{digits}f} ± {r[f'{metric}_std'].iloc[0]:.{digits}f}{mark}"
                if len(r) else "–")
        table[method] = row
    p_row = {}
    for fraction, metric, region in columns:
        try:
            a, b = two_best(metrics, fraction, region)
        except ValueError:
            p_row[label[(fraction, metric, region)]] = "– (fewer than two methods)"
            continue
        test = wilcoxon_paired(metrics, a, b, fraction=fraction, region=region, metric=metric)
        tests.append(test)
        p_row[label[(fraction, metric, region)]] = f"{test['p_value']:.3g} ({a} vs {b}, n={test['n_cases']})"
    table["p (Wilcoxon)"] = p_row
    out = pd.DataFrame.from_dict(table, orient="index")
    out.index.name = "method"
    return out.reset_index(), pd.DataFrame(tests, columns=TEST_COLUMNS)


def write_paper_table(table: pd.DataFrame, out_csv, out_md, out_tex, hd_percentile: float = 95,
                      label: str = "tab:comparison") -> None:
    """CSV, Markdown and LaTeX of ``paper_table``'s table, with a caption saying what is paired."""
    caption = (f"Dice and HD{hd_percentile:g} (mm) per region at each annotated fraction of the pool: "
               "mean ± std over seeds (each seed: mean over test cases); full is trained on the whole pool. "
               "Last row: two-sided Wilcoxon signed-rank test between the two best methods by mean Dice "
               "(oracle and full excluded), paired over test cases (each case: mean over seeds), n = number of "
               f"test cases. {DEGENERATE_MARK}: at least one seed's model is degenerate (foreground on more than half "
               "of the test background, or none at all).")
    table.to_csv(out_csv, index=False)
    Path(out_md).write_text(f"{caption}\n\n{table.to_markdown(index=False)}\n")
    latex = table.to_latex(index=False, escape=True, caption=caption, label=label)
    Path(out_tex).write_text(latex.replace("±", r"$\pm$").replace("–", "--"))


_RUN_PATH = re.compile(r"runs/(?P<method>[^/]+)/seed(?P<seed>\d+)/round(?P<round>\d+)/train_log\.csv$")


def read_train_logs(paths) -> pd.DataFrame:
    """Training logs ``.../runs/{method}/seed{seed}/round{k}/train_log.csv`` in one table.

    Columns: method, seed, round, epoch, loss, seconds, samples_per_s, n_samples (and member, for
    ensembles: one row per member and epoch).
    """
    frames = []
    for path in paths:
        match = _RUN_PATH.search(Path(path).as_posix())
        if match is None:
            raise ValueError(f"{path}: not a runs/<method>/seed<seed>/round<k>/train_log.csv path")
        log = pd.read_csv(path)
        log.insert(0, "round", int(match["round"]))
        log.insert(0, "seed", int(match["seed"]))
        log.insert(0, "method", match["method"])
        frames.append(log)
    if not frames:
        raise ValueError("no training logs given")
    return pd.concat(frames, ignore_index=True)


def plot_training_loss(logs: pd.DataFrame, out_pdf, out_png) -> None:
    """Segmentation loss of every method on one axis, epochs counted across rounds; band = std over
    seeds. A method's own extra term (LL's ranking loss) is left out, so the curves compare; ensemble
    members are averaged. Page width (7 in); dots mark the first epoch of each round."""
    column = "seg_loss" if "seg_loss" in logs.columns else "loss"
    per_seed = logs.groupby(["method", "seed", "round", "epoch"], as_index=False)[column].mean()
    methods = method_order(per_seed.method.unique())
    palette = dict(zip(methods, sns.color_palette("tab10", max(len(methods), 1))))
    sns.set_theme(style="whitegrid", context="paper", font_scale=1.0)
    fig, ax = plt.subplots(figsize=(7, 4))
    for method in methods:
        d = per_seed[per_seed.method == method]
        epochs_per_round = d.groupby("round").epoch.max().sort_index()
        offset = epochs_per_round.cumsum().shift(fill_value=0)
        d = d.assign(step=d.epoch + d["round"].map(offset))
        curve = d.groupby("step")[column].agg(["mean", "std"]).fillna(0.0)
        ax.plot(curve.index, curve["mean"], color=palette[method], label=method, lw=1.2,
                ls="--" if method in REFERENCE_METHODS else "-")
        ax.fill_between(curve.index, (curve["mean"] - curve["std"]).clip(lower=0), curve["mean"] + curve["std"],
                        alpha=0.15, color=palette[method], linewidth=0)
        starts = (offset + 1).to_numpy()
        ax.scatter(starts, curve["mean"].reindex(starts).to_numpy(), color=palette[method], s=12, zorder=3)
    ax.set_xlabel("epoch, counted across rounds (dots: first epoch of a round)")
    ax.set_ylabel("segmentation loss (training)")
    ax.set_ylim(bottom=0)
    ax.legend(ncol=min(len(methods), 4), fontsize=8, frameon=False)
    fig.tight_layout()
    _save(fig, out_pdf, out_png)


def aggregate(metric_paths, out_dir, hd_percentile: float = 95) -> dict[str, Path]:
    """metrics.csv, summary tables (CSV, Markdown, LaTeX) and learning curves (PDF, PNG)."""
    out_dir = Path(out_dir)
    (out_dir / "tables").mkdir(parents=True, exist_ok=True)
    (out_dir / "figures").mkdir(parents=True, exist_ok=True)
    outputs = {
        "metrics": out_dir / "metrics.csv",
        "table_csv": out_dir / "tables" / "summary.csv",
        "table_md": out_dir / "tables" / "summary.md",
        "table_tex": out_dir / "tables" / "summary.tex",
        "curves_pdf": out_dir / "figures" / "learning_curves.pdf",
        "curves_png": out_dir / "figures" / "learning_curves.png",
    }
    metrics = collect_metrics(metric_paths, outputs["metrics"])
    summary = summary_table(metrics)
    write_tables(summary, outputs["table_csv"], outputs["table_md"], outputs["table_tex"], hd_percentile)
    plot_learning_curves(summary, outputs["curves_pdf"], outputs["curves_png"], hd_percentile, seed_means(metrics))
    return outputs


def paper_outputs(metrics_csv, train_logs, out: dict, *, budgets, figure_budget: float,
                  hd_percentile: float = 95) -> None:
    """Tables 3-5 (comparison with the two-best Wilcoxon row), the all-pairs Holm table, and
    Figs. 6-8 (per-region Dice at one budget, training-loss curves).

    ``out`` maps the names ``table_csv, table_md, table_tex, tests_csv, pairs_csv, pairs_md,
    region_pdf, region_png, loss_pdf, loss_png`` to paths.
    """
    metrics = pd.read_csv(metrics_csv)
    regions = list(dict.fromkeys(metrics.region))
    table, tests = paper_table(metrics, budgets, regions, hd_percentile)
    write_paper_table(table, out["table_csv"], out["table_md"], out["table_tex"], hd_percentile)
    tests.to_csv(out["tests_csv"], index=False)
    pairs = pd.concat([pairwise_wilcoxon(metrics, fraction, region, metric).assign(metric=metric)
                       for fraction in budgets for region in regions for metric in ("dice", "hd95")],
                      ignore_index=True)
    pairs.to_csv(out["pairs_csv"], index=False)
    Path(out["pairs_md"]).write_text(
        "Two-sided Wilcoxon signed-rank tests between every pair of methods (oracle and full excluded), "
        "paired over test cases (each case: mean over seeds); `p_holm`: Holm-adjusted within each "
        "(budget, region, metric) family.\n\n" + pairs.to_markdown(index=False) + "\n")
    plot_region_dice(metrics, figure_budget, out["region_pdf"], out["region_png"])
    plot_training_loss(read_train_logs(train_logs), out["loss_pdf"], out["loss_png"])


def ablation_table(metric_paths, out_csv, out_md, out_tex, *, budgets, hd_percentile: float = 95,
                   name: str = "ablation") -> None:
    """An ablation in the paper's table layout (Tables 1 and 2): its variants at the given budgets."""
    metrics = pd.concat([pd.read_csv(p) for p in metric_paths], ignore_index=True)
    table, _ = paper_table(metrics, budgets, list(dict.fromkeys(metrics.region)), hd_percentile)
    write_paper_table(table, out_csv, out_md, out_tex, hd_percentile, label=f"tab:{name}")
