# Aggregation, tables and figures (cheap: run on the submitting host).


localrules:
    aggregate,


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
        "../envs/slicepick.yaml"
    log:
        f"{LOGS}/aggregate.log",
    script:
        "../scripts/aggregate.py"
