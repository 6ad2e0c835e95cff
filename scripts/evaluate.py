"""Dice and HD per test case and region for one (method, seed, round)."""
from slicepick.joblog import start_job
from slicepick.rounds import evaluate_round

start_job(snakemake.log[0], snakemake.threads)
evaluate_round(snakemake.input.store, snakemake.input.model, snakemake.input.selection, snakemake.output[0],
               dataset=snakemake.params.dataset, method=snakemake.wildcards.method,
               seed=int(snakemake.wildcards.seed), round_index=int(snakemake.wildcards.round),
               fraction=snakemake.params.fraction, device=snakemake.params.device,
               hd_percentile=snakemake.params.hd_percentile)
