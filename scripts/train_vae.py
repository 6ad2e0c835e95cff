"""Train the VAE on the pool, encode every stored slice, draw inputs beside reconstructions."""
import numpy as np

from slicepick.data.store import SliceStore
from slicepick.joblog import start_job
from slicepick.models import pick_device
from slicepick.vae import encode, plot_reconstructions, save_vae, train_vae

log = start_job(snakemake.log[0], snakemake.threads)
cfg = snakemake.params.vae
device = pick_device(snakemake.params.device)
store = SliceStore(snakemake.input.store)
pool = store.pool_ids
model = train_vae(store, pool, latent_dim=int(snakemake.wildcards.dim), channels=cfg["channels"],
                  epochs=cfg["epochs"], batch_size=cfg["batch_size"], lr=cfg["lr"], seed=cfg["seed"], device=device,
                  log_csv=snakemake.output.log_csv)
save_vae(snakemake.output.model, model)
latents = encode(model, store, np.arange(len(store.index)), device)
np.save(snakemake.output.latents, latents)
shown = pool[np.linspace(0, len(pool) - 1, 8).astype(int)]
plot_reconstructions(model, store, shown, snakemake.output.reconstructions_png, snakemake.output.reconstructions_pdf,
                     device=device)
log.info("VAE z%s: latents %s written", snakemake.wildcards.dim, latents.shape)
