"""Every round of one method and seed: round 0 (its start, or a copy of the shared one), then suggest,
train and evaluate round after round."""
from pathlib import Path

from slicepick.joblog import start_job
from slicepick.rounds import run_chain

start_job(snakemake.log[0], snakemake.threads)
extra = {name: path for name, path in snakemake.input.items() if name in ("vae", "latents", "ranking")}
shared = snakemake.input.get("start_model")
run_chain(snakemake.input.store, Path(snakemake.output[0]).parent.parent, rounds=len(snakemake.params.schedule),
          shared_start_dir=Path(shared).parent if shared else None, dataset=snakemake.params.dataset,
          method=snakemake.wildcards.method, method_cfg=snakemake.params.method_cfg,
          seed=int(snakemake.wildcards.seed), schedule=snakemake.params.schedule,
          unet_features=snakemake.params.unet["features"], training=snakemake.params.training, inputs=extra,
          hd_percentile=snakemake.params.hd_percentile)
