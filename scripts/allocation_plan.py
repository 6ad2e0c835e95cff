"""Check the allocation grid against the prepared data and pick every cell's slices."""
from slicepick.allocation.experiment import AllocationError, plan_selections
from slicepick.allocation.interpolation import MissingDependency
from slicepick.joblog import start_job

log = start_job(snakemake.log[0])
try:
    plan_selections(snakemake.input.store, snakemake.output[0], alloc_cfg=snakemake.params.allocation,
                    seeds=snakemake.params.seeds)
except AllocationError as err:
    log.error("%s", err)
    raise SystemExit(f"allocation grid refused by the data:\n{err}")
except MissingDependency as err:
    log.error("%s", err)
    raise SystemExit(str(err))
