"""Test-case predictions as NIfTI on the input grid, for an annotator's viewer."""
from slicepick.data.store import SliceStore
from slicepick.evaluation import save_predictions
from slicepick.joblog import start_job
from slicepick.models import load_model, pick_device

log = start_job(snakemake.log[0], snakemake.threads)
device = pick_device(snakemake.params.device)
model, _ = load_model(snakemake.input.model, device)
paths = save_predictions(model, SliceStore(snakemake.input.store), device, snakemake.output[0])
log.info("wrote %d prediction volumes to %s", len(paths), snakemake.output[0])
