"""The latent space with each round's suggestions (the paper's Fig. 5: t-SNE of the VAE latents)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.manifold import TSNE  # noqa: E402


def embed_2d(latents: np.ndarray, seed: int) -> tuple[np.ndarray, str]:
    """``(N, 2)`` coordinates to draw and the axis name: the latents themselves when d == 2, else t-SNE."""
    latents = np.asarray(latents, np.float64)
    if latents.shape[1] == 2:
        return latents, "z"
    # sklearn needs perplexity < N; 30 (its default) for real pools, smaller for tiny ones.
    perplexity = float(min(30.0, max(1.0, (len(latents) - 1) / 3)))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
    return tsne.fit_transform(latents), "t-SNE"


def plot_latent_space(latents_pool, pool_ids, rounds: dict, out_png, out_pdf, seed: int = 0) -> None:
    """Pool in grey, round 0 (random start) and each round's suggestions in their own colours.

    latents_pool ``(N, d)``: latents of the pool, row i belongs to sample ``pool_ids[i]``;
    rounds: round index -> sample ids added in that round (ids of the pool). d == 2 is drawn as
    is; otherwise t-SNE (seeded) maps the pool to 2-D, as in the paper's Fig. 5.
    """
    latents_pool = np.asarray(latents_pool)
    pool_ids = np.asarray(pool_ids)
    if latents_pool.ndim != 2 or len(latents_pool) != len(pool_ids):
        raise ValueError(f"latent plot: {len(pool_ids)} pool ids for latents of shape {latents_pool.shape}")
    row_of = {int(sid): i for i, sid in enumerate(pool_ids)}
    unknown = sorted({int(s) for ids in rounds.values() for s in ids} - row_of.keys())
    if unknown:
        raise ValueError(f"latent plot: sample ids {unknown[:10]} are not in the pool")
    xy, axis_name = embed_2d(latents_pool, seed)

    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    suggested = np.zeros(len(pool_ids), bool)
    for ids in rounds.values():
        suggested[[row_of[int(s)] for s in ids]] = True
    ax.scatter(*xy[~suggested].T, s=6, c="0.78", linewidths=0, label="pool (not annotated)")
    suggestion_rounds = sorted(r for r in rounds if r != 0)
    colours = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, max(len(suggestion_rounds), 1)))
    if 0 in rounds:
        rows = [row_of[int(s)] for s in rounds[0]]
        ax.scatter(*xy[rows].T, c="crimson", marker="x", s=30, linewidths=1.2, zorder=3,
                   label=f"round 0: random start ({len(rows)})")
    for colour, r in zip(colours, suggestion_rounds):
        rows = [row_of[int(s)] for s in rounds[r]]
        ax.scatter(*xy[rows].T, color=colour, marker="o", s=22, edgecolors="black", linewidths=0.4, zorder=3,
                   label=f"round {r}: suggested ({len(rows)})")
    ax.set_xlabel(f"{axis_name} 1")
    ax.set_ylabel(f"{axis_name} 2")
    title = "VAE latent space" if axis_name == "z" else f"t-SNE of the {latents_pool.shape[1]}-D VAE latent space"
    ax.set_title(f"{title} ({len(pool_ids)} pool samples)")
    ax.legend(loc="best", fontsize=8, frameon=True, markerscale=1.3)
    fig.tight_layout()
    for path in (out_png, out_pdf):
        fig.savefig(path, dpi=150)
    plt.close(fig)
