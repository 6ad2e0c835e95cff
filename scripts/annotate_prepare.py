"""Annotate mode: the images' slices along annotate.axis, in the files' own voxel order, into a slice store."""
from slicepick.annotate import prepare_annotate_store
from slicepick.joblog import start_job

start_job(snakemake.log[0])
prepare_annotate_store(snakemake.params.data_root, snakemake.params.dataset, int(snakemake.params.axis),
                       snakemake.output[0])
