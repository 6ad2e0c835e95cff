# Helper functions that compute inputs and targets; no logic beyond paths.
from slicepick.strategies import declared, module_name, module_path

RESULTS = config["results_dir"]
DATASET = config["dataset"]["name"]
DS = f"{RESULTS}/{DATASET}"
STORE = f"{DS}/prepared"
RUN = f"{DS}/runs/{{method}}/seed{{seed}}/round{{round}}"
LOGS = f"logs/{DATASET}"
METHODS = list(config["methods"])
SEEDS = config["seeds"]


wildcard_constraints:
    method="|".join(METHODS),
    seed=r"\d+",
    round=r"\d+",


def round_file(method, seed, round_index, name):
    return f"{DS}/runs/{method}/seed{seed}/round{round_index}/{name}"


def data_root(wildcards, input):
    """The synthetic data folder is a tracked input; real data is only read."""
    return input.data or config["data_root"]


def method_cfg(method):
    return config["methods"][method] or {}


def strategy_module(wildcards):
    """The method's source file: editing it reruns only that method's jobs."""
    return str(module_path(module_name(wildcards.method, method_cfg(wildcards.method))))


def n_rounds(method):
    if declared(module_name(method, method_cfg(method)), "SINGLE_ROUND", False):
        return 1
    return len(config["schedule"])


def previous_model(wildcards):
    k = int(wildcards.round)
    if k == 0:
        return []
    return round_file(wildcards.method, wildcards.seed, k - 1, "model.pt")


def round_fraction(method, round_index):
    return 1.0 if n_rounds(method) == 1 else config["schedule"][int(round_index)]


def all_metrics():
    return [
        round_file(m, s, k, "metrics.csv")
        for m in METHODS
        for s in SEEDS
        for k in range(n_rounds(m))
    ]


def final_outputs():
    outputs = [
        f"{DS}/metrics.csv",
        f"{DS}/tables/summary.md",
        f"{DS}/figures/learning_curves.png",
    ]
    if config["evaluation"]["save_predictions"]:
        outputs += [
            round_file(m, s, n_rounds(m) - 1, "predictions")
            for m in METHODS
            for s in SEEDS
        ]
    return outputs
