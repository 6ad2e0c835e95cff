# Annotate mode (mode: annotate, config/annotate.yaml): rounds on a team's own unlabelled volumes.
# `snakemake annotate`: a new round only when the annotations folder changed since the newest round
# (decided here, from files, when the workflow is parsed); `snakemake plan`: a budget plan.
import sys
from pathlib import Path

from slicepick.annotation_state import (annotate_cases, annotation_files, check_annotations, image_geometry,
                                        next_round, raw_label_values)
from slicepick.data.readers import DatasetError
from slicepick.strategies import declared, module_name, module_path

RESULTS = config["results_dir"]
DATASET = config["dataset"]["name"]
ADS = f"{RESULTS}/{DATASET}"
ASTORE = f"{ADS}/annotate/prepared"
SUGGESTIONS = f"{ADS}/suggestions"
ALOGS = f"logs/{DATASET}/annotate"
ABENCH = f"{ADS}/benchmarks/annotate"
ANNOTATE = config["annotate"]
AMETHOD = ANNOTATE["method"]
AMETHOD_CFG = dict((config.get("methods") or {}).get(AMETHOD) or {})
AMODULE = module_name(AMETHOD, AMETHOD_CFG)
if declared(AMODULE, "INPUTS"):
    AMETHOD_CFG.setdefault("latent_dim", config["vae"]["latent_dim"])

try:
    ROUND, ROUND_DUE, _ = next_round(SUGGESTIONS, config["annotations_root"])
    _files = annotation_files(config["annotations_root"])
    if ROUND_DUE and _files:  # a bad file stops here: one line naming it, nothing run, nothing written
        check_annotations(_files, image_geometry(annotate_cases(config["data_root"], config["dataset"])),
                          raw_label_values(config["data_root"], config["dataset"]), ANNOTATE["ignore_value"])
except DatasetError as _err:
    sys.exit(str(_err))

try:  # the store is remade when volumes are added or removed (its job reports an unreadable data_root)
    IMAGE_CASES = sorted(c.case_id for c in annotate_cases(config["data_root"], config["dataset"]))
except DatasetError:
    IMAGE_CASES = None

ROUND_DIR = f"{SUGGESTIONS}/round{ROUND}"
LATEST = f"{SUGGESTIONS}/latest"


# The VAE and its latents, for methods on the latent space (GGS, ClsMC).
_Z = f"{ADS}/annotate/vae/z{AMETHOD_CFG.get('latent_dim')}"
ROUND_INPUTS = {"vae": f"{_Z}/model.pt", "latents": f"{_Z}/latents.npy"} if declared(AMODULE, "INPUTS") else {}


rule annotate_prepare:
    output:
        directory(ASTORE),
    params:
        data_root=config["data_root"],
        dataset=config["dataset"],
        axis=ANNOTATE["axis"],
        cases=IMAGE_CASES,
    conda:
        "../envs/torch.yaml"
    log:
        f"{ALOGS}/prepare.log",
    benchmark:
        f"{ABENCH}/prepare.tsv"
    script:
        "../scripts/annotate_prepare.py"


rule annotate_vae:
    input:
        store=ASTORE,
    output:
        model=f"{ADS}/annotate/vae/z{{dim}}/model.pt",
        latents=f"{ADS}/annotate/vae/z{{dim}}/latents.npy",
        log_csv=f"{ADS}/annotate/vae/z{{dim}}/train_log.csv",
        reconstructions_png=f"{ADS}/annotate/vae/z{{dim}}/reconstructions.png",
        reconstructions_pdf=f"{ADS}/annotate/vae/z{{dim}}/reconstructions.pdf",
    wildcard_constraints:
        dim=r"\d+",
    params:
        vae=config["vae"],
        device=config["training"]["device"],
    threads: config["training"]["threads"]
    conda:
        "../envs/torch.yaml"
    log:
        f"{ALOGS}/vae_z{{dim}}.log",
    benchmark:
        f"{ABENCH}/vae_z{{dim}}.tsv"
    script:
        "../scripts/train_vae.py"


# Defined only when a round is due: an existing round folder is never a job's output, so changed
# code or settings never rewrite a round the annotator is working from.
if ROUND_DUE:

    rule annotate_round:
        input:
            **ROUND_INPUTS,
            store=ASTORE,
            module=str(module_path(AMODULE)),
        output:
            directory(ROUND_DIR),
        params:
            annotations_root=config["annotations_root"],
            suggestions=lambda w, output: str(Path(output[0]).parent),
            round_index=ROUND,
            method=AMETHOD,
            method_cfg=AMETHOD_CFG,
            annotate=ANNOTATE,
            unet_features=config["unet"].get("features", [32, 64, 128, 256, 512, 32]),
            training=config["training"],
        threads: config["training"]["threads"]
        conda:
            "../envs/torch.yaml"
        log:
            f"{ALOGS}/round{ROUND}.log",
        benchmark:
            f"{ABENCH}/round{ROUND}.tsv"
        script:
            "../scripts/annotate_round.py"


if ROUND_DUE or not Path(LATEST).is_dir():

    rule annotate_latest:
        input:
            ROUND_DIR,
        output:
            directory(LATEST),
        localrule: True
        conda:
            "../envs/torch.yaml"
        log:
            f"{ALOGS}/latest.log",
        benchmark:
            f"{ABENCH}/latest.tsv"
        script:
            "../scripts/annotate_latest.py"


rule plan:
    input:
        store=ASTORE,
    output:
        directory(f"{ADS}/plan"),
    params:
        budget=config["plan_budget"],
        plan=config["plan"],
        annotate=ANNOTATE,
    conda:
        "../envs/torch.yaml"
    log:
        f"{ALOGS}/plan.log",
    benchmark:
        f"{ABENCH}/plan.tsv"
    script:
        "../scripts/annotate_plan.py"
