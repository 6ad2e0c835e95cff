# Paths and target lists of the allocation study (rules/allocation.smk); no logic beyond paths.
from snakemake.exceptions import WorkflowError

from slicepick.allocation.grid import cells as allocation_cells

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


def allocation_methods():
    names = list(ALLOC_CFG["selections"])
    if "ual" in names:
        names += [f"ual_{a}" for a in ALLOC_CFG["ual_allocations"] if a != "equal"]
    return names


ALLOC_TABLES = ["selection", "interpolation", "allocation"]
