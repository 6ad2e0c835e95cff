"""One ablation (e.g. GGS latent size, Table 1) in the paper's table layout."""
from slicepick.joblog import start_job
from slicepick.reporting import ablation_table

start_job(snakemake.log[0])
ablation_table(snakemake.input, snakemake.output.csv, snakemake.output.md, snakemake.output.tex,
               budgets=snakemake.params.budgets, hd_percentile=snakemake.params.hd_percentile,
               name=f"ablation_{snakemake.wildcards.table}")
