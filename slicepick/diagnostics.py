"""Selection diagnostics: what each method's annotated set looks like, round by round.

A ranking of methods says who won; these numbers say why (DESIGN.md section 7). One row per
method, seed and round, describing the cumulative annotated set after that round:

``n_selected``          slices annotated so far
``n_added``             slices added this round (round 0: the start set)
``foreground_share``    share of the annotated slices that hold any label
``mean_foreground_px``  mean labelled pixels per annotated slice
``n_cases``             distinct volumes among the annotated slices
``adjacent_share``      share of this round's slices within one slice of another annotated slice
                        of the same volume (neighbours carry little new information)
``latent_coverage``     mean distance from every pool slice to its nearest annotated slice in the
                        VAE latent space (lower: the set covers the manifold better); empty when
                        the run has no VAE

Imports neither torch nor MONAI (a table job).
"""
from __future__ import annotations

import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy.spatial import cKDTree  # noqa: E402

from slicepick.data.store import SliceStore  # noqa: E402
from slicepick.files import replace_atomically  # noqa: E402

COLUMNS = ["method", "seed", "round", "n_selected", "n_added", "foreground_share", "mean_foreground_px",
           "n_cases", "adjacent_share", "latent_coverage"]
_RUN = re.compile(r"runs/(?P<method>[^/]+)/seed(?P<seed>\d+)/round(?P<round>\d+)/selection\.csv$")


def adjacent_share(selection: pd.DataFrame, added: pd.DataFrame) -> float:
    """Share of ``added`` slices with another slice of ``selection`` at z - 1 or z + 1 in the same case."""
    if added.empty:
        return float("nan")
    taken = set(zip(selection.case, selection.z))
    near = [(c, z - 1) in taken or (c, z + 1) in taken for c, z in zip(added.case, added.z)]
    return float(np.mean(near))


def selection_row(selection: pd.DataFrame, round_index: int, foreground_px: np.ndarray,
                  pool_tree_query=None) -> dict:
    """The diagnostics of one cumulative selection (``sample_id, case, z, round_added``)."""
    ids = selection.sample_id.to_numpy()
    fg = foreground_px[ids]
    added = selection[selection.round_added == round_index]
    return {"round": round_index, "n_selected": len(ids), "n_added": len(added),
            "foreground_share": float((fg > 0).mean()) if len(ids) else float("nan"),
            "mean_foreground_px": float(fg.mean()) if len(ids) else float("nan"),
            "n_cases": int(selection.case.nunique()), "adjacent_share": adjacent_share(selection, added),
            "latent_coverage": pool_tree_query(ids) if pool_tree_query is not None else float("nan")}


def latent_coverage_fn(latents: np.ndarray, pool_ids: np.ndarray):
    """``ids -> mean distance from each pool slice to its nearest slice among ids`` in latent space."""
    pool = np.asarray(latents)[pool_ids]

    def coverage(ids):
        distances, _ = cKDTree(np.asarray(latents)[ids]).query(pool, k=1)
        return float(distances.mean())

    return coverage


def selection_stats(selection_paths, store_dir, latents_path=None) -> pd.DataFrame:
    """Rows of ``COLUMNS`` for every ``runs/<method>/seed<s>/round<k>/selection.csv`` given."""
    store = SliceStore(store_dir)
    n = len(store.index)
    foreground_px = np.zeros(n, np.int64)
    for start in range(0, n, 4096):  # chunked: the label map of a large store is never held whole
        foreground_px[start:start + 4096] = (np.asarray(store.labels[start:start + 4096]) != 0).sum(axis=(1, 2))
    coverage = latent_coverage_fn(np.load(latents_path), store.pool_ids) if latents_path else None
    rows = []
    for path in selection_paths:
        m = _RUN.search(str(path).replace("\\", "/"))
        if m is None:
            raise ValueError(f"selection_stats: {path} is not runs/<method>/seed<s>/round<k>/selection.csv")
        row = selection_row(pd.read_csv(path), int(m["round"]), foreground_px, coverage)
        rows.append({"method": m["method"], "seed": int(m["seed"]), **row})
    return pd.DataFrame(rows, columns=COLUMNS).sort_values(["method", "seed", "round"]).reset_index(drop=True)


def write_selection_stats(stats: pd.DataFrame, out_csv, out_md) -> None:
    for path, text in ((out_csv, stats.to_csv(index=False)),
                       (out_md, stats.to_markdown(index=False, floatfmt=".3f") + "\n")):
        replace_atomically(path, lambda tmp, text=text: tmp.write_text(text))


PANELS = [("foreground_share", "slices with any label (share)"), ("n_cases", "distinct volumes"),
          ("adjacent_share", "added next to an annotated slice (share)"),
          ("latent_coverage", "mean latent distance to nearest annotated")]


def plot_selection_stats(stats: pd.DataFrame, out_pdf, out_png, method_order=None) -> None:
    """Each diagnostic against the annotated count: one line per method (mean over seeds), seeds as dots.
    ``full`` (the whole pool) is left out: it would stretch the axis and its values say nothing."""
    stats = stats[stats.method != "full"]
    panels = [(c, t) for c, t in PANELS if stats[c].notna().any()]
    methods = [m for m in (method_order or sorted(stats.method.unique())) if m != "full"]
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), squeeze=False)
    colours = dict(zip(methods, plt.get_cmap("tab10").colors))
    for ax, (column, title) in zip(axes.flat, panels):
        for method in methods:
            rows = stats[stats.method == method]
            if rows.empty:
                continue
            ax.scatter(rows.n_selected, rows[column], s=10, alpha=0.5, color=colours[method])
            mean = rows.groupby("n_selected")[column].mean()
            ax.plot(mean.index, mean.values, marker="o", ms=3, label=method, color=colours[method])
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("annotated slices")
        if column.endswith("share"):
            ax.set_ylim(-0.02, 1.02)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.suptitle("Selection diagnostics of the annotated set after each round (lines: mean over seeds; dots: seeds)",
                 fontsize=11)
    fig.tight_layout()
    for path in (out_pdf, out_png):
        fig.savefig(path, dpi=150)
    plt.close(fig)
