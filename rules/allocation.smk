# The budget-allocation study (second paper): `snakemake allocation`. Not part of the default target.
# One planning job (checks the grid against the data, picks every cell's slices), one job per
# (B, s, seed, model) that trains and evaluates every selection x interpolation, one aggregation.
include: "allocation_common.smk"


if ALLOC_CFG is None:

    localrules:
        allocation,

    rule allocation:
        log:
            f"{LOGS}/allocation.log",
        run:
            raise WorkflowError(
                "config: no allocation: block; copy the one of config.yaml (or use config/allocation_*.yaml)"
            )

else:

    wildcard_constraints:
        budget=r"\d+",
        n_volumes=r"\d+",
        model="2d|3d",

    localrules:
        allocation_aggregate,

    rule allocation_plan:
        input:
            store=STORE,
        output:
            f"{ALLOC}/selections.csv",
        params:
            allocation=ALLOC_CFG,
            seeds=allocation_seeds(),
        conda:
            "../envs/torch.yaml"
        log:
            f"{LOGS}/allocation/plan.log",
        benchmark:
            f"{BENCH}/allocation/plan.tsv"
        script:
            "../scripts/allocation_plan.py"

    rule allocation_train:
        input:
            store=STORE,
            selections=f"{ALLOC}/selections.csv",
        output:
            metrics=f"{ALLOC}/runs/B{{budget}}_s{{n_volumes}}/seed{{seed}}/{{model}}/metrics.csv",
            log_csv=f"{ALLOC}/runs/B{{budget}}_s{{n_volumes}}/seed{{seed}}/{{model}}/train_log.csv",
        params:
            dataset=DATASET,
            allocation=ALLOC_CFG,
            unet=config["unet"],
            training=config["training"],
            hd_percentile=config["evaluation"]["hd_percentile"],
        threads: config["training"].get("threads", 1)
        conda:
            "../envs/torch.yaml"
        log:
            f"{LOGS}/allocation/B{{budget}}_s{{n_volumes}}/seed{{seed}}/{{model}}.log",
        benchmark:
            f"{BENCH}/allocation/B{{budget}}_s{{n_volumes}}/seed{{seed}}/{{model}}.tsv"
        script:
            "../scripts/allocation_train.py"

    rule allocation_aggregate:
        input:
            allocation_metrics(),
        output:
            metrics=f"{ALLOC}/metrics.csv",
            heatmaps_png=report(allocation_heatmaps("png"), category="Allocation study"),
            heatmaps_pdf=allocation_heatmaps("pdf"),
            curves_png=report(
                expand(f"{ALLOC}/figures/dice_vs_volumes_{{model}}.png", model=ALLOC_CFG["models"]),
                category="Allocation study",
            ),
            curves_pdf=expand(f"{ALLOC}/figures/dice_vs_volumes_{{model}}.pdf", model=ALLOC_CFG["models"]),
            tables_csv=report(
                expand(f"{ALLOC}/tables/{{table}}.csv", table=ALLOC_TABLES),
                category="Allocation study",
            ),
            tables_md=expand(f"{ALLOC}/tables/{{table}}.md", table=ALLOC_TABLES),
            tables_tex=expand(f"{ALLOC}/tables/{{table}}.tex", table=ALLOC_TABLES),
        params:
            models=ALLOC_CFG["models"],
            methods={model: method_names(ALLOC_CFG, model) for model in ALLOC_CFG["models"]},
        conda:
            "../envs/report.yaml"
        log:
            f"{LOGS}/allocation/aggregate.log",
        benchmark:
            f"{BENCH}/allocation/aggregate.tsv"
        script:
            "../scripts/allocation_aggregate.py"

    rule allocation:
        input:
            rules.allocation_aggregate.output,

    rule allocation_nnunet_export:
        input:
            store=STORE,
            selections=f"{ALLOC}/selections.csv",
        output:
            directory(f"{ALLOC}/nnunet_raw/B{{budget}}_s{{n_volumes}}/seed{{seed}}"),
        params:
            dataset=DATASET,
            allocation=ALLOC_CFG,
            seeds=allocation_seeds(),
        conda:
            "../envs/torch.yaml"
        log:
            f"{LOGS}/allocation/nnunet_B{{budget}}_s{{n_volumes}}_seed{{seed}}.log",
        benchmark:
            f"{BENCH}/allocation/nnunet_B{{budget}}_s{{n_volumes}}_seed{{seed}}.tsv"
        script:
            "../scripts/allocation_nnunet.py"

    rule allocation_nnunet:
        input:
            [
                f"{ALLOC}/nnunet_raw/B{b}_s{s}/seed{seed}"
                for b, s in allocation_cells(ALLOC_CFG)
                for seed in allocation_seeds()
            ],
