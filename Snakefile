# slicepick: which slices to annotate next. The Snakefile only checks the config and includes rules.
import os
import sys

import yaml
from snakemake.utils import min_version, validate

from slicepick.config import ConfigError, check_config

min_version("9.0")


# The embedded default, unless the command line names a config file: then that file is the whole
# config (a paper-scale config must not inherit the default's dataset or methods).
if not workflow.overwrite_configfiles:

    configfile: os.path.join(workflow.basedir, "config.yaml")



with open(workflow.source_path("config/schema.yaml")) as _schema_file:
    _SCHEMA = yaml.safe_load(_schema_file)
try:
    check_config(config, _SCHEMA)
except ConfigError as _err:
    sys.exit(str(_err))
validate(config, "config/schema.yaml")  # fills in the schema's defaults


report: "docs/report/workflow.rst"


# mode: annotate (config/annotate.yaml) - rounds on a team's own unlabelled volumes; otherwise the simulation.
if config["mode"] == "annotate":

    include: "rules/annotate.smk"

    # the default target here: an included file's default_target does not count
    rule annotate:
        input:
            LATEST,
        default_target: True

else:

    include: "rules/common.smk"
    include: "rules/data.smk"
    include: "rules/vae.smk"
    include: "rules/rounds.smk"
    include: "rules/report.smk"
    include: "rules/allocation.smk"

    rule all:
        input:
            final_outputs(),
        default_target: True
