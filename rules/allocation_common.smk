# Paths and target lists of the allocation study (rules/allocation.smk); no logic beyond paths.
from snakemake.exceptions import WorkflowError

from slicepick.allocation.grid import cells as allocation_cells
from slicepick.allocation.grid import method_names

ALLOC = f"{DS}/allocation"
ALLOC_CFG = config.get("allocation")


def allocation_seeds():
    return ALLOC_CFG.get("seeds") or SEEDS


def allocation_metrics():
    return [
        f"{ALLOC}/runs/B{b}_s{s}/seed{seed}/{model}/metrics.csv"
        for b, s in allocation_cells(ALLOC_CFG)
        for seed in allocation_seeds()
        for model in ALLOC_CFG["models"]
    ]


def allocation_heatmaps(ext):
    """One heat map per model and each method that model is trained on."""
    return [
        f"{ALLOC}/figures/heatmap_{model}_{method}.{ext}"
        for model in ALLOC_CFG["models"]
        for method in method_names(ALLOC_CFG, model)
    ]


ALLOC_TABLES = ["selection", "interpolation", "allocation"]
