# Helper functions that compute inputs and targets; no logic beyond paths.
from slicepick.strategies import declared, module_name, module_path

RESULTS = config["results_dir"]
DATASET = config["dataset"]["name"]
DS = f"{RESULTS}/{DATASET}"
STORE = f"{DS}/prepared"
RUN = f"{DS}/runs/{{method}}/seed{{seed}}/round{{round}}"
LOGS = f"logs/{DATASET}"
METHODS = list(config["methods"])
VARIANTS = config["ablations"]["variants"]  # ablation-only methods: run by the `ablations` target
SEEDS = config["seeds"]
SCHEDULE = config["schedule"]
REPORT_BUDGETS = config["report"].get("budgets") or sorted({SCHEDULE[(len(SCHEDULE) - 1) // 2], SCHEDULE[-1]})
FIGURE_BUDGET = config["report"].get("figure_budget", SCHEDULE[-1])


wildcard_constraints:
    method="|".join([*METHODS, *VARIANTS]),
    dim=r"\d+",
    table=r"[A-Za-z0-9_]+",
    seed=r"\d+",
    round=r"\d+",


def round_file(method, seed, round_index, name):
    return f"{DS}/runs/{method}/seed{seed}/round{round_index}/{name}"


def data_root(wildcards, input):
    """The synthetic data folder is a tracked input; real data is only read."""
    return input.data or config["data_root"]


def method_cfg(method):
    """The method's config block; latent-space methods also get the latent size they use."""
    block = dict((config["methods"].get(method) if method in config["methods"] else VARIANTS[method]) or {})
    if declared(module_name(method, block), "INPUTS"):
        block.setdefault("latent_dim", config["vae"]["latent_dim"])
    return block


def method_inputs_of(method):
    return declared(module_name(method, method_cfg(method)), "INPUTS") or ()


def vae_file(dim, name):
    return f"{DS}/vae/z{dim}/{name}"


def method_inputs(wildcards):
    """Files a method reads besides the model: the VAE, its latents, ClsMC's cached ranking (rules/vae.smk)."""
    block = method_cfg(wildcards.method)
    wanted = method_inputs_of(wildcards.method)
    files = {"vae": vae_file(block.get("latent_dim"), "model.pt"),
             "latents": vae_file(block.get("latent_dim"), "latents.npy"),
             "ranking": vae_file(block.get("latent_dim"), f"clsmc_ranking_{wildcards.method}.npy")}
    return {name: files[name] for name in wanted}


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


def all_metrics(methods=METHODS):
    return [
        round_file(m, s, k, "metrics.csv")
        for m in methods
        for s in SEEDS
        for k in range(n_rounds(m))
    ]


def latent_methods(methods=METHODS):
    """Methods that walk the VAE latent space and get a latent-space figure (GGS, Fig. 5)."""
    return [m for m in methods if module_name(m, method_cfg(m)) == "ggs"]


def last_round_selections(method):
    return round_file(method, SEEDS[0], n_rounds(method) - 1, "selection.csv")


def final_outputs():
    outputs = [
        f"{DS}/metrics.csv",
        f"{DS}/tables/summary.md",
        f"{DS}/figures/learning_curves.png",
        f"{DS}/tables/comparison.md",
        f"{DS}/figures/region_dice.png",
    ]
    outputs += [f"{DS}/figures/latent_space_{m}.png" for m in latent_methods()]
    dims = {method_cfg(m)["latent_dim"] for m in METHODS if method_inputs_of(m)}
    outputs += [vae_file(d, "reconstructions.png") for d in sorted(dims)]
    if config["evaluation"]["save_predictions"]:
        outputs += [
            round_file(m, s, n_rounds(m) - 1, "predictions")
            for m in METHODS
            for s in SEEDS
        ]
    return outputs
