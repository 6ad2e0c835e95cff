# The VAE manifold: trained once per (dataset, latent size) on the pool images, no labels.


rule train_vae:
    input:
        store=STORE,
    output:
        model=vae_file("{dim}", "model.pt"),
        latents=vae_file("{dim}", "latents.npy"),
        log_csv=vae_file("{dim}", "train_log.csv"),
        reconstructions_png=report(vae_file("{dim}", "reconstructions.png"), caption=f"{CAPTIONS}/reconstructions.rst",
                                   category="Latent space"),
        reconstructions_pdf=vae_file("{dim}", "reconstructions.pdf"),
    params:
        vae=config["vae"],
        device=config["training"]["device"],
    conda:
        "../envs/torch.yaml"
    log:
        f"{LOGS}/vae/z{{dim}}.log",
    threads: THREADS
    benchmark:
        f"{BENCH}/train_vae/z{{dim}}.tsv"
    script:
        "../scripts/train_vae.py"


rule latent_figure:
    input:
        latents=lambda w: vae_file(method_cfg(w.method)["latent_dim"], "latents.npy"),
        store=STORE,
        selection=lambda w: last_round_selections(w.method),
    output:
        png=report(f"{DS}/figures/latent_space_{{method}}.png", caption=f"{CAPTIONS}/latent_space.rst",
                   category="Latent space"),
        pdf=f"{DS}/figures/latent_space_{{method}}.pdf",
    params:
        seed=SEEDS[0],
    conda:
        "../envs/torch.yaml"
    log:
        f"{LOGS}/latent_figure_{{method}}.log",
    benchmark:
        f"{BENCH}/latent_figure/{{method}}.tsv"
    script:
        "../scripts/latent_figure.py"


rule clsmc_ranking:
    # ClsMC's ranking depends only on the latents and the method's block: computed once per latent
    # space (up to the schedule's last budget) and read by every seed's initial selection and
    # suggestions (slicepick/strategies/clsmc.py).
    input:
        store=STORE,
        latents=vae_file("{dim}", "latents.npy"),
    output:
        vae_file("{dim}", "clsmc_ranking_{method}.npy"),
    params:
        module=strategy_digest,
        method_cfg=lambda w: method_cfg(w.method),
        schedule=config["schedule"],  # ranked as far as the last budget
    conda:
        "../envs/torch.yaml"
    log:
        f"{LOGS}/vae/z{{dim}}/clsmc_ranking_{{method}}.log",
    benchmark:
        f"{BENCH}/clsmc_ranking/z{{dim}}/{{method}}.tsv"
    script:
        "../scripts/clsmc_ranking.py"
