# The round loop per (method, seed, round): select -> train and evaluate -> suggest -> ...


rule initial_selection:
    input:
        unpack(method_inputs),
        store=STORE,
    output:
        f"{DS}/runs/{{method}}/seed{{seed}}/round0/selection.csv",
    params:
        module=strategy_digest,
        method_cfg=lambda w: method_cfg(w.method),
        schedule=config["schedule"],
    conda:
        "../envs/torch.yaml"
    log:
        f"{LOGS}/{{method}}/seed{{seed}}/initial_selection.log",
    script:
        "../scripts/initial_selection.py"


rule train:
    input:
        store=STORE,
        selection=f"{RUN}/selection.csv",
        previous=previous_model,
    output:
        model=f"{RUN}/model.pt",
        log_csv=f"{RUN}/train_log.csv",
        metrics=f"{RUN}/metrics.csv",
    params:
        module=strategy_digest,
        dataset=DATASET,
        method_cfg=lambda w: method_cfg(w.method),
        fraction=lambda w: round_fraction(w.method, w.round),
        unet=config["unet"],
        training=config["training"],
        hd_percentile=config["evaluation"]["hd_percentile"],
    conda:
        "../envs/torch.yaml"
    log:
        f"{LOGS}/{{method}}/seed{{seed}}/round{{round}}/train.log",
    script:
        "../scripts/train.py"


rule suggest:
    input:
        unpack(method_inputs),
        store=STORE,
        model=lambda w: round_file(w.method, w.seed, int(w.round) - 1, "model.pt"),
        selection=lambda w: round_file(w.method, w.seed, int(w.round) - 1, "selection.csv"),
    output:
        f"{RUN}/selection.csv",
    wildcard_constraints:
        round=r"[1-9]\d*",
    params:
        module=strategy_digest,
        method_cfg=lambda w: method_cfg(w.method),
        schedule=config["schedule"],
        device=config["training"]["device"],
    conda:
        "../envs/torch.yaml"
    log:
        f"{LOGS}/{{method}}/seed{{seed}}/round{{round}}/suggest.log",
    script:
        "../scripts/suggest.py"


rule save_predictions:
    input:
        store=STORE,
        model=f"{RUN}/model.pt",
    output:
        directory(f"{RUN}/predictions"),
    params:
        device=config["training"]["device"],
    conda:
        "../envs/torch.yaml"
    log:
        f"{LOGS}/{{method}}/seed{{seed}}/round{{round}}/save_predictions.log",
    script:
        "../scripts/save_predictions.py"
