"""ClsMC's ranking of the pool up to the last budget, once per latent space (every seed and round reads it)."""
from slicepick.joblog import mark_useful_start, start_job
from slicepick.data.prepare import SliceStore
from slicepick.rounds import budget_sizes
from slicepick.strategies import get_strategy, module_name

log = start_job(snakemake.log[0])
pool = SliceStore(snakemake.input.store).pool_ids
n = budget_sizes(snakemake.params.schedule, len(pool))[-1]
strategy = get_strategy(module_name(snakemake.wildcards.method, snakemake.params.method_cfg))
mark_useful_start(log)
strategy.write_ranking(snakemake.output[0], pool, snakemake.input.latents, snakemake.params.method_cfg, n)
log.info("%s: ranked %d of %d pool samples (the last budget)", snakemake.wildcards.method, n, len(pool))
