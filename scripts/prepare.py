"""Validate and prepare the dataset into the slice store; a bad dataset exits non-zero, one line per problem."""
import sys

from slicepick.data.prepare import prepare_dataset
from slicepick.data.readers import DatasetError, find_cases, resolve_dataset
from slicepick.joblog import start_job

log = start_job(snakemake.log[0])
data_root = snakemake.params.data_root
layout = "brats" if snakemake.params.dataset["layout"] == "synthetic" else snakemake.params.dataset["layout"]
try:
    ds = resolve_dataset(layout, data_root, snakemake.params.dataset)
    cases = find_cases(layout, data_root, ds)
    prepare_dataset(cases, snakemake.output[0], modalities=ds["modalities"], label_values=ds.get("label_values"),
                    regions=ds.get("regions"), label_groups=ds.get("label_groups"), test_fraction=ds["test_fraction"],
                    split_seed=ds["split_seed"], resize=ds.get("resize"), on_bad_case=ds["on_bad_case"])
except DatasetError as err:
    for line in str(err).splitlines():
        log.error("%s", line)
    sys.exit(1)
