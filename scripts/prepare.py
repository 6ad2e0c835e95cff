"""Validate and prepare the dataset into the slice store; a bad dataset exits non-zero, one line per problem."""
import sys

from slicepick.data.prepare import prepare_from_config
from slicepick.data.readers import DatasetError
from slicepick.joblog import start_job

log = start_job(snakemake.log[0])
try:
    prepare_from_config(snakemake.params.data_root, snakemake.params.dataset, snakemake.output[0])
except DatasetError as err:
    for line in str(err).splitlines():
        log.error("%s", line)
    sys.exit(1)
