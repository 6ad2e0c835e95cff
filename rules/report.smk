# Aggregation, tables and figures (cheap: run on the submitting host).


localrules:
    aggregate,
    selection_stats,
    paper_tables,
    ablation_table,
    latent_figure,


rule aggregate:
    input:
        all_metrics(),
    output:
        metrics=f"{DS}/metrics.csv",
        table_csv=f"{DS}/tables/summary.csv",
        table_md=report(f"{DS}/tables/summary.md", caption=f"{CAPTIONS}/summary.rst", category="Tables"),
        table_tex=f"{DS}/tables/summary.tex",
        curves_pdf=f"{DS}/figures/learning_curves.pdf",
        curves_png=report(f"{DS}/figures/learning_curves.png", caption=f"{CAPTIONS}/learning_curves.rst",
                          category="Figures"),
    params:
        hd_percentile=config["evaluation"]["hd_percentile"],
    conda:
        "../envs/report.yaml"
    log:
        f"{LOGS}/aggregate.log",
    benchmark:
        f"{BENCH}/aggregate.tsv"
    script:
        "../scripts/aggregate.py"


rule paper_tables:
    input:
        metrics=f"{DS}/metrics.csv",
        train_logs=lambda w: [f.replace("metrics.csv", "train_log.csv") for f in all_metrics()],
    output:
        table_csv=f"{DS}/tables/comparison.csv",
        table_md=report(f"{DS}/tables/comparison.md", caption=f"{CAPTIONS}/comparison.rst", category="Tables"),
        table_tex=f"{DS}/tables/comparison.tex",
        tests_csv=f"{DS}/tables/wilcoxon_two_best.csv",
        pairs_csv=f"{DS}/tables/wilcoxon_all_pairs.csv",
        pairs_md=report(f"{DS}/tables/wilcoxon_all_pairs.md", caption=f"{CAPTIONS}/wilcoxon.rst", category="Tables"),
        region_pdf=f"{DS}/figures/region_dice.pdf",
        region_png=report(f"{DS}/figures/region_dice.png", caption=f"{CAPTIONS}/region_dice.rst", category="Figures"),
        loss_pdf=f"{DS}/figures/training_loss.pdf",
        loss_png=report(f"{DS}/figures/training_loss.png", caption=f"{CAPTIONS}/training_loss.rst",
                        category="Figures"),
    params:
        budgets=REPORT_BUDGETS,
        figure_budget=FIGURE_BUDGET,
        hd_percentile=config["evaluation"]["hd_percentile"],
    conda:
        "../envs/report.yaml"
    log:
        f"{LOGS}/paper_tables.log",
    benchmark:
        f"{BENCH}/paper_tables.tsv"
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
        budgets=ABLATION_BUDGETS,
        hd_percentile=config["evaluation"]["hd_percentile"],
    conda:
        "../envs/report.yaml"
    log:
        f"{LOGS}/ablation_{{table}}.log",
    benchmark:
        f"{BENCH}/ablation_table/{{table}}.tsv"
    script:
        "../scripts/ablation_table.py"


rule ablations:
    input:
        expand(f"{DS}/tables/ablation_{{table}}.md", table=list(config["ablations"]["tables"])),


rule selection_stats:
    input:
        unpack(selection_stats_inputs),
    output:
        csv=f"{DS}/tables/selection_stats.csv",
        md=report(f"{DS}/tables/selection_stats.md", caption=f"{CAPTIONS}/selection_stats.rst", category="Diagnostics"),
        pdf=f"{DS}/figures/selection_stats.pdf",
        png=report(f"{DS}/figures/selection_stats.png", caption=f"{CAPTIONS}/selection_stats.rst",
                   category="Diagnostics"),
    conda:
        "../envs/report.yaml"
    log:
        f"{LOGS}/selection_stats.log",
    benchmark:
        f"{BENCH}/selection_stats.tsv"
    script:
        "../scripts/selection_stats.py"
