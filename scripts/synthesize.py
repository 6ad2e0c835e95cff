"""Write the embedded synthetic BraTS-layout dataset."""
from slicepick.data.synthetic import generate_dataset
from slicepick.joblog import start_job

log = start_job(snakemake.log[0])
cfg = snakemake.params.synthetic
ids = generate_dataset(snakemake.output[0], n_cases=cfg["n_cases"], shape=cfg["shape"], seed=cfg["seed"])
log.info("wrote %d synthetic cases to %s", len(ids), snakemake.output[0])
