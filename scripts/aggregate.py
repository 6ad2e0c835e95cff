"""metrics.csv, summary tables and learning curves of the dataset."""
from pathlib import Path

from slicepick.joblog import start_job
from slicepick.reporting import aggregate

log = start_job(snakemake.log[0])
outputs = aggregate(snakemake.input, Path(snakemake.output.metrics).parent, snakemake.params.hd_percentile)
log.info("wrote %s", ", ".join(str(p) for p in outputs.values()))
