"""Annotate mode: one round - check the annotations, train on the annotated slices, suggest the next ones."""
from slicepick.annotate import run_round
from slicepick.joblog import start_job

start_job(snakemake.log[0], snakemake.threads)
extra = {name: path for name, path in snakemake.input.items() if name in ("vae", "latents")}
run_round(store_dir=snakemake.input.store, annotations_root=snakemake.params.annotations_root,
          suggestions_dir=snakemake.params.suggestions, round_index=int(snakemake.params.round_index),
          out_dir=snakemake.output[0], method=snakemake.params.method, method_cfg=snakemake.params.method_cfg,
          annotate_cfg=snakemake.params.annotate, unet_features=snakemake.params.unet_features,
          training=snakemake.params.training, inputs=extra)
