"""Annotate mode: copy the newest round folder to suggestions/latest (temp copy, then rename)."""
import shutil
from pathlib import Path

from slicepick.joblog import start_job

log = start_job(snakemake.log[0])
source, target = Path(snakemake.input[0]), Path(snakemake.output[0])
tmp = target.with_name(target.name + ".tmp")
shutil.rmtree(tmp, ignore_errors=True)
shutil.copytree(source, tmp, ignore=shutil.ignore_patterns("model.pt", "train_log.csv"))
if target.exists():
    shutil.rmtree(target)
tmp.replace(target)
log.info("%s -> %s", source, target)
