"""The latent space of the pool with each round's suggestions of one seed (paper Fig. 5)."""
import numpy as np
import pandas as pd

from slicepick.data.store import SliceStore
from slicepick.joblog import start_job
from slicepick.latent_plots import plot_latent_space

start_job(snakemake.log[0])
store = SliceStore(snakemake.input.store)
pool = store.pool_ids
latents = np.load(snakemake.input.latents)
selection = pd.read_csv(snakemake.input.selection)
rounds = {int(k): group.sample_id.to_numpy() for k, group in selection.groupby("round_added")}
plot_latent_space(latents[pool], pool, rounds, snakemake.output.png, snakemake.output.pdf, seed=snakemake.params.seed)
