"""Export one cell's sparse training sets (every selection x interpolation) as nnU-Net v2 raw datasets."""
from slicepick.allocation.nnunet import export_cell
from slicepick.joblog import start_job

log = start_job(snakemake.log[0])
w = snakemake.wildcards
alloc = snakemake.params.allocation
written = export_cell(snakemake.input.store, snakemake.input.selections, snakemake.output[0],
                      dataset=snakemake.params.dataset, budget=int(w.budget), n_volumes=int(w.n_volumes),
                      seed=int(w.seed), alloc_cfg=alloc, seeds=snakemake.params.seeds,
                      first_id=int(alloc.get("nnunet_first_id", 500)))
log.info("wrote %s", ", ".join(p.name for p in written))
