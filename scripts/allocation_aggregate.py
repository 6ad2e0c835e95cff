"""The allocation study's metrics.csv, heat maps, Dice-against-volumes curves and tables."""
from slicepick.allocation import report
from slicepick.joblog import start_job

log = start_job(snakemake.log[0])
out = snakemake.output
metrics = report.collect(snakemake.input, out.metrics)
i = 0
for model in snakemake.params.models:
    for method in snakemake.params.methods[model]:  # the order of rules/allocation_common.smk's heat maps
        report.heatmap(metrics, model, method, out.heatmaps_png[i], out.heatmaps_pdf[i])
        i += 1
for j, model in enumerate(snakemake.params.models):
    report.dice_vs_volumes(metrics, model, out.curves_png[j], out.curves_pdf[j])
builders = {"selection": report.selection_table, "interpolation": report.interpolation_table,
            "allocation": report.allocation_table}
for j, name in enumerate(builders):
    report.write_table(builders[name](metrics), name, out.tables_csv[j], out.tables_md[j], out.tables_tex[j])
log.info("allocation study: %d metric rows, %d heat maps, %d tables", len(metrics), i, len(builders))
