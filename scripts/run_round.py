"""One round of one method: its selection (start or suggestion), then training and evaluation."""
from pathlib import Path

from slicepick.joblog import start_job
from slicepick.rounds import run_round

start_job(snakemake.log[0], snakemake.threads)
extra = {name: path for name, path in snakemake.input.items() if name in ("vae", "latents", "ranking")}
previous = snakemake.input.get("previous_model")
run_round(snakemake.input.store, Path(snakemake.output.model).parent,
          previous_dir=Path(previous).parent if previous else None,
          dataset=snakemake.params.dataset, method=snakemake.wildcards.method, method_cfg=snakemake.params.method_cfg,
          seed=int(snakemake.wildcards.seed), round_index=int(snakemake.wildcards.round),
          fraction=snakemake.params.fraction, schedule=snakemake.params.schedule,
          unet_features=snakemake.params.unet["features"], training=snakemake.params.training, inputs=extra,
          hd_percentile=snakemake.params.hd_percentile)
