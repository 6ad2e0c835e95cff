# Aggregation, tables and figures (cheap: run on the submitting host).


localrules:
    aggregate,
    paper_tables,
    ablation_table,
    latent_figure,


rule aggregate:
    input:
        all_metrics(),
    output:
        metrics=f"{DS}/metrics.csv",
        table_csv=f"{DS}/tables/summary.csv",
        table_md=f"{DS}/tables/summary.md",
        table_tex=f"{DS}/tables/summary.tex",
        curves_pdf=f"{DS}/figures/learning_curves.pdf",
        curves_png=f"{DS}/figures/learning_curves.png",
    params:
        hd_percentile=config["evaluation"]["hd_percentile"],
    conda:
        "../envs/report.yaml"
    log:
        f"{LOGS}/aggregate.log",
    script:
        "../scripts/aggregate.py"


rule paper_tables:
    input:
        metrics=f"{DS}/metrics.csv",
        train_logs=lambda w: [f.replace("metrics.csv", "train_log.csv") for f in all_metrics()],
    output:
        table_csv=f"{DS}/tables/comparison.csv",
        table_md=f"{DS}/tables/comparison.md",
        table_tex=f"{DS}/tables/comparison.tex",
        tests_csv=f"{DS}/tables/wilcoxon_two_best.csv",
        pairs_csv=f"{DS}/tables/wilcoxon_all_pairs.csv",
        pairs_md=f"{DS}/tables/wilcoxon_all_pairs.md",
        region_pdf=f"{DS}/figures/region_dice.pdf",
        region_png=f"{DS}/figures/region_dice.png",
        loss_pdf=f"{DS}/figures/training_loss.pdf",
        loss_png=f"{DS}/figures/training_loss.png",
    params:
        budgets=REPORT_BUDGETS,
        figure_budget=FIGURE_BUDGET,
        hd_percentile=config["evaluation"]["hd_percentile"],
    conda:
        "../envs/report.yaml"
    log:
        f"{LOGS}/paper_tables.log",
    script:
        "../scripts/paper_tables.py"


rule ablation_table:
    input:
        lambda w: all_metrics(config["ablations"]["tables"][w.table]),
    output:
        csv=f"{DS}/tables/ablation_{{table}}.csv",
        md=f"{DS}/tables/ablation_{{table}}.md",
        tex=f"{DS}/tables/ablation_{{table}}.tex",
    params:
        budgets=REPORT_BUDGETS,
        hd_percentile=config["evaluation"]["hd_percentile"],
    conda:
        "../envs/report.yaml"
    log:
        f"{LOGS}/ablation_{{table}}.log",
    script:
        "../scripts/ablation_table.py"


rule ablations:
    input:
        expand(f"{DS}/tables/ablation_{{table}}.md", table=list(config["ablations"]["tables"])),
