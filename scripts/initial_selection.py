"""Round 0: the seeded random start (or the method's own, e.g. full = the whole pool)."""
from slicepick.joblog import start_job
from slicepick.rounds import make_initial_selection

start_job(snakemake.log[0])
extra = {name: path for name, path in snakemake.input.items() if name in ("vae", "latents", "ranking")}
make_initial_selection(snakemake.input.store, snakemake.output[0], method=snakemake.wildcards.method,
                       method_cfg=snakemake.params.method_cfg, seed=int(snakemake.wildcards.seed),
                       schedule=snakemake.params.schedule, inputs=extra)
