"""Selection diagnostics per method, seed and round: table and figure."""
from slicepick.diagnostics import plot_selection_stats, selection_stats, write_selection_stats
from slicepick.joblog import start_job
from slicepick.reporting import method_order

log = start_job(snakemake.log[0])
stats = selection_stats(snakemake.input.selections, snakemake.input.store, snakemake.input.get("latents"))
write_selection_stats(stats, snakemake.output.csv, snakemake.output.md)
plot_selection_stats(stats, snakemake.output.pdf, snakemake.output.png, method_order(stats.method.unique()))
log.info("selection diagnostics of %d selections written", len(stats))
