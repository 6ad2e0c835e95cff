"""Train (round 0) or fine-tune (later rounds) the method's model on its annotated set, then evaluate it."""
from slicepick.joblog import start_job
from slicepick.rounds import train_round

start_job(snakemake.log[0], snakemake.threads)
train_round(snakemake.input.store, snakemake.input.selection, snakemake.output.model, snakemake.output.log_csv,
            snakemake.output.metrics, previous_model=snakemake.input.previous or None,
            dataset=snakemake.params.dataset, method=snakemake.wildcards.method,
            method_cfg=snakemake.params.method_cfg, seed=int(snakemake.wildcards.seed),
            round_index=int(snakemake.wildcards.round), fraction=snakemake.params.fraction,
            unet_features=snakemake.params.unet["features"], training=snakemake.params.training,
            hd_percentile=snakemake.params.hd_percentile)
