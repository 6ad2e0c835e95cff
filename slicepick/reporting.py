"""Aggregation, tables and figures from the per-round metrics files."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

METRIC_COLUMNS = ["dataset", "method", "seed", "round", "fraction", "n_annotated", "case", "region", "dice", "hd95"]
REFERENCE_METHODS = ("full",)


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
    return metrics.groupby(keys, as_index=False).agg(dice=("dice", "mean"), hd95=("hd95", "mean"),
                                                     n_annotated=("n_annotated", "mean"))


def summary_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds per method, budget and region (std of the per-seed case means)."""
    per_seed = seed_means(metrics)
    keys = ["method", "round", "fraction", "region"]
    out = per_seed.groupby(keys, as_index=False).agg(
        n_seeds=("seed", "nunique"), n_annotated=("n_annotated", "mean"),
        dice_mean=("dice", "mean"), dice_std=("dice", "std"), hd95_mean=("hd95", "mean"), hd95_std=("hd95", "std"))
    return out.fillna({"dice_std": 0.0, "hd95_std": 0.0})


def _pm(mean, std, digits):
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def wide_table(summary: pd.DataFrame, hd_percentile: float = 95) -> pd.DataFrame:
    """Rows: method and budget; columns: Dice and HD per region, as 'mean ± std'."""
    hd = f"HD{hd_percentile:g} (mm)"
    rows = []
    for (method, rnd, fraction), group in summary.groupby(["method", "round", "fraction"], sort=True):
        row = {"method": method, "annotated %": f"{100 * fraction:g}", "seeds": int(group.n_seeds.max())}
        for _, r in group.iterrows():
            row[f"Dice {r.region}"] = _pm(r.dice_mean, r.dice_std, 3)
            row[f"{hd} {r.region}"] = _pm(r.hd95_mean, r.hd95_std, 1)
        rows.append(row)
    return pd.DataFrame(rows)


def write_tables(summary: pd.DataFrame, out_csv, out_md, out_tex, hd_percentile: float = 95) -> None:
    summary.to_csv(out_csv, index=False)
    wide = wide_table(summary, hd_percentile)
    caption = ("Mean ± std over seeds (each seed: mean over test cases) of Dice and "
               f"HD{hd_percentile:g} in mm, per method and annotated fraction of the pool.")
    Path(out_md).write_text(f"{caption}\n\n{wide.to_markdown(index=False)}\n")
    latex = wide.to_latex(index=False, escape=True, caption=caption, label="tab:summary")
    Path(out_tex).write_text(latex.replace("±", r"$\pm$"))


def plot_learning_curves(summary: pd.DataFrame, out_pdf, out_png, hd_percentile: float = 95) -> None:
    """Dice and HD against annotated %, one column per region; band = std over seeds."""
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
                ax.fill_between(x, d[f"{metric}_mean"] - d[f"{metric}_std"], d[f"{metric}_mean"] + d[f"{metric}_std"],
                                alpha=0.18, color=palette[method], linewidth=0)
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
    plot_learning_curves(summary, outputs["curves_pdf"], outputs["curves_png"], hd_percentile)
    return outputs
