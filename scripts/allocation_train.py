"""Train and evaluate one model on every selection x interpolation of one (B, s, seed)."""
from slicepick.allocation.experiment import run_cell
from slicepick.joblog import start_job

start_job(snakemake.log[0], snakemake.threads)
w = snakemake.wildcards
run_cell(snakemake.input.store, snakemake.input.selections, snakemake.output.metrics, snakemake.output.log_csv,
         dataset=snakemake.params.dataset, budget=int(w.budget), n_volumes=int(w.n_volumes), seed=int(w.seed),
         model_kind=w.model, alloc_cfg=snakemake.params.allocation, unet_features=snakemake.params.unet["features"],
         augment=snakemake.params.training.get("augment", {}), device=snakemake.params.training.get("device", "auto"),
         hd_percentile=snakemake.params.hd_percentile)
