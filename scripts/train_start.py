"""Round 0 shared by the methods that start from the seeded random set: selection, model, evaluation."""
from pathlib import Path

from slicepick.joblog import start_job
from slicepick.rounds import train_shared_start

start_job(snakemake.log[0], snakemake.threads)
train_shared_start(snakemake.input.store, Path(snakemake.output.model).parent,
                   dataset=snakemake.params.dataset, seed=int(snakemake.wildcards.seed),
                   schedule=snakemake.params.schedule, unet_features=snakemake.params.unet["features"],
                   training=snakemake.params.training, hd_percentile=snakemake.params.hd_percentile)
