"""Validate and prepare the dataset into the slice store."""
from slicepick.data.prepare import prepare_dataset
from slicepick.data.readers import find_cases
from slicepick.joblog import start_job

start_job(snakemake.log[0])
ds = snakemake.params.dataset
layout = "brats" if ds["layout"] == "synthetic" else ds["layout"]
cases = find_cases(layout, snakemake.params.data_root, ds)
prepare_dataset(cases, snakemake.output[0], modalities=ds["modalities"], label_values=ds["label_values"],
                regions=ds["regions"], test_fraction=ds["test_fraction"], split_seed=ds["split_seed"],
                resize=ds.get("resize"))
