# The round loop per (method, seed, round): one job selects (start or suggestion), trains and evaluates;
# with chain_rounds (the default) one job runs every round of a method and seed, in order.
# Methods that start from the seeded random set with the plain U-Net share one round-0 job per seed.


rule train_start:
    input:
        store=STORE,
    output:
        selection=f"{START}/selection.csv",
        model=f"{START}/model.pt",
        log_csv=f"{START}/train_log.csv",
        metrics=f"{START}/metrics.csv",
    params:
        dataset=DATASET,
        schedule=config["schedule"],
        unet=config["unet"],
        training=config["training"],
        hd_percentile=config["evaluation"]["hd_percentile"],
    threads: THREADS
    conda:
        "../envs/torch.yaml"
    log:
        f"{LOGS}/start/seed{{seed}}/train_start.log",
    benchmark:
        f"{BENCH}/train_start/seed{{seed}}.tsv"
    script:
        "../scripts/train_start.py"


if CHAINED:

    # Every round of a multi-round method and seed in one job (chain_rounds: true).
    rule run_chain:
        input:
            unpack(method_inputs),
            unpack(shared_start_inputs),
            store=STORE,
        output:
            chain_outputs(),
        wildcard_constraints:
            method="|".join(CHAINED),
        params:
            module=strategy_digest,
            dataset=DATASET,
            method_cfg=lambda w: method_cfg(w.method),
            schedule=config["schedule"],
            unet=config["unet"],
            training=config["training"],
            hd_percentile=config["evaluation"]["hd_percentile"],
        threads: THREADS
        conda:
            "../envs/torch.yaml"
        log:
            f"{LOGS}/{{method}}/seed{{seed}}/run_chain.log",
        benchmark:
            f"{BENCH}/run_chain/{{method}}/seed{{seed}}.tsv"
        script:
            "../scripts/run_chain.py"


if SHARING_PER_ROUND:

    # A plain copy of the shared round 0 into each sharing method's folder (no job start-up: in process).
    localrules:
        share_start,

    ruleorder: share_start > run_round

    rule share_start:
        input:
            selection=f"{START}/selection.csv",
            model=f"{START}/model.pt",
            log_csv=f"{START}/train_log.csv",
            metrics=f"{START}/metrics.csv",
        output:
            selection=f"{DS}/runs/{{method}}/seed{{seed}}/round0/selection.csv",
            model=f"{DS}/runs/{{method}}/seed{{seed}}/round0/model.pt",
            log_csv=f"{DS}/runs/{{method}}/seed{{seed}}/round0/train_log.csv",
            metrics=f"{DS}/runs/{{method}}/seed{{seed}}/round0/metrics.csv",
        wildcard_constraints:
            method="|".join(SHARING_PER_ROUND),
        log:
            f"{LOGS}/{{method}}/seed{{seed}}/round0/share_start.log",
        run:
            copy_shared_start(input, output, wildcards.method, log[0])


rule run_round:
    wildcard_constraints:
        method=PER_ROUND_METHODS,
    input:
        unpack(method_inputs),
        unpack(previous_round),
        store=STORE,
    output:
        selection=f"{RUN}/selection.csv",
        model=f"{RUN}/model.pt",
        log_csv=f"{RUN}/train_log.csv",
        metrics=f"{RUN}/metrics.csv",
    params:
        module=strategy_digest,
        dataset=DATASET,
        method_cfg=lambda w: method_cfg(w.method),
        fraction=lambda w: round_fraction(w.method, w.round),
        schedule=config["schedule"],
        unet=config["unet"],
        training=config["training"],
        hd_percentile=config["evaluation"]["hd_percentile"],
    threads: THREADS
    conda:
        "../envs/torch.yaml"
    log:
        f"{LOGS}/{{method}}/seed{{seed}}/round{{round}}/run_round.log",
    benchmark:
        f"{BENCH}/run_round/{{method}}/seed{{seed}}/round{{round}}.tsv"
    script:
        "../scripts/run_round.py"


rule save_predictions:
    input:
        store=STORE,
        model=f"{RUN}/model.pt",
    output:
        directory(f"{RUN}/predictions"),
    params:
        device=config["training"]["device"],
    threads: THREADS
    conda:
        "../envs/torch.yaml"
    log:
        f"{LOGS}/{{method}}/seed{{seed}}/round{{round}}/save_predictions.log",
    benchmark:
        f"{BENCH}/save_predictions/{{method}}/seed{{seed}}/round{{round}}.tsv"
    script:
        "../scripts/save_predictions.py"
