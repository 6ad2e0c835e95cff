"""Comparison table with paired tests, all-pairs Holm table, per-region Dice and training-loss figures."""
from slicepick.joblog import start_job
from slicepick.reporting import paper_outputs

start_job(snakemake.log[0])
paper_outputs(snakemake.input.metrics, snakemake.input.train_logs, dict(snakemake.output.items()),
              budgets=snakemake.params.budgets, figure_budget=snakemake.params.figure_budget,
              hd_percentile=snakemake.params.hd_percentile)
