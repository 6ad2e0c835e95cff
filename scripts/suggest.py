"""The method suggests the samples to annotate for this round."""
from slicepick.joblog import start_job
from slicepick.rounds import suggest_next

start_job(snakemake.log[0], snakemake.threads)
extra = {name: path for name, path in snakemake.input.items() if name in ("vae", "latents", "ranking")}
suggest_next(snakemake.input.store, snakemake.input.model, snakemake.input.selection, snakemake.output[0],
             method=snakemake.wildcards.method, method_cfg=snakemake.params.method_cfg,
             seed=int(snakemake.wildcards.seed), round_index=int(snakemake.wildcards.round) - 1,
             schedule=snakemake.params.schedule, inputs=extra, device=snakemake.params.device)
