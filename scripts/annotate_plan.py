"""Annotate mode: a non-interactive plan of plan_budget slices over the volumes."""
from slicepick.annotate import run_plan
from slicepick.joblog import start_job

start_job(snakemake.log[0])
run_plan(store_dir=snakemake.input.store, out_dir=snakemake.output[0], budget=snakemake.params.budget,
         plan_cfg=snakemake.params.plan, annotate_cfg=snakemake.params.annotate)
