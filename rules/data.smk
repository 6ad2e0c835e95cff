# Data in: the synthetic generator (embedded default) and preparation into the slice store.
# `snakemake prepare` validates every case and prepares the store, nothing more (docs/data.md).


if config["dataset"]["layout"] == "synthetic":

    rule synthesize:
        output:
            directory(config["data_root"]),
        params:
            synthetic=config["dataset"]["synthetic"],
        conda:
            "../envs/torch.yaml"
        log:
            f"{LOGS}/synthesize.log",
        benchmark:
            f"{BENCH}/synthesize.tsv"
        script:
            "../scripts/synthesize.py"


rule prepare:
    input:
        data=config["data_root"] if config["dataset"]["layout"] == "synthetic" else [],
    output:
        directory(STORE),
    params:
        data_root=data_root,
        dataset=config["dataset"],
    conda:
        "../envs/torch.yaml"
    log:
        f"{LOGS}/prepare.log",
    benchmark:
        f"{BENCH}/prepare.tsv"
    script:
        "../scripts/prepare.py"
