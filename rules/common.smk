# Helper functions that compute inputs and targets; no logic beyond paths.
from slicepick.pairing import ROUND_FILES, copy_shared_start
from slicepick.strategies import declared, module_digest, module_name, shares_start
from slicepick.strategies import n_rounds as method_rounds
from slicepick.strategies import round_fraction as method_fraction

RESULTS = config["results_dir"]
DATASET = config["dataset"]["name"]
DS = f"{RESULTS}/{DATASET}"
STORE = f"{DS}/prepared"
RUN = f"{DS}/runs/{{method}}/seed{{seed}}/round{{round}}"
START = f"{DS}/runs/_start/seed{{seed}}"  # round 0 shared by the methods in SHARING
LOGS = f"logs/{DATASET}"
BENCH = f"{DS}/benchmarks"  # Snakemake's per-job wall time and memory (benchmarks/job_startup.py reads them)
THREADS = config["training"]["threads"]
CAPTIONS = "../docs/report"  # report captions, relative to the rules files
METHODS = list(config["methods"])
VARIANTS = config["ablations"]["variants"]  # ablation-only methods: run by the `ablations` target
SEEDS = config["seeds"]
SCHEDULE = config["schedule"]
REPORT_BUDGETS = config["report"].get("budgets") or sorted({SCHEDULE[(len(SCHEDULE) - 1) // 2], SCHEDULE[-1]})
ABLATION_BUDGETS = config["report"].get("ablation_budgets") or REPORT_BUDGETS
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


def strategy_digest(wildcards):
    """Content hash of the method's module, a param: editing the module reruns only that method's
    jobs. Not an input path: a path would change when the checkout moves, and so rerun everything."""
    return module_digest(module_name(wildcards.method, method_cfg(wildcards.method)))


def method_shares_start(method):
    return shares_start(module_name(method, method_cfg(method)))


# Methods (and ablation variants) whose round 0 is the shared start: random start, plain U-Net.
SHARING = [m for m in [*METHODS, *VARIANTS] if method_shares_start(m)]


def previous_round(wildcards):
    """The previous round's model and selection (the suggestion's inputs); none at round 0."""
    k = int(wildcards.round)
    if k == 0:
        return {}
    return {"previous_model": round_file(wildcards.method, wildcards.seed, k - 1, "model.pt"),
            "previous_selection": round_file(wildcards.method, wildcards.seed, k - 1, "selection.csv")}


def n_rounds(method):
    return method_rounds(module_name(method, method_cfg(method)), SCHEDULE)


def round_fraction(method, round_index):
    return method_fraction(module_name(method, method_cfg(method)), SCHEDULE, round_index)


CHAIN_ROUNDS = config["chain_rounds"]
# chain_rounds: the multi-round methods run as one job per (method, seed); single-round ones (full) per round
MULTI_ROUND = [m for m in [*METHODS, *VARIANTS] if n_rounds(m) > 1]
CHAINED = [m for m in MULTI_ROUND if CHAIN_ROUNDS]
PER_ROUND_METHODS = "|".join(m for m in [*METHODS, *VARIANTS] if m not in CHAINED) or "^$"
# sharing methods whose round 0 is a copy made by its own (local) rule; chained ones copy it in their job
SHARING_PER_ROUND = [m for m in SHARING if m not in CHAINED]


def chain_outputs():
    return [f"{DS}/runs/{{method}}/seed{{seed}}/round{k}/{name}" for k in range(len(SCHEDULE)) for name in ROUND_FILES.values()]


def shared_start_inputs(wildcards):
    """The shared round 0 of the seed, for methods that share it."""
    if wildcards.method not in SHARING:
        return {}
    return {f"start_{name.split('.')[0]}": f"{START}/{name}".format(seed=wildcards.seed) for name in ROUND_FILES.values()}


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


def all_selections(methods=METHODS):
    return [f.replace("metrics.csv", "selection.csv") for f in all_metrics(methods)]


def selection_stats_inputs(wildcards):
    """Every selection, the store, and the default VAE's latents when the run has a VAE (coverage)."""
    inputs = {"selections": all_selections(), "store": STORE}
    if any(method_inputs_of(m) for m in METHODS):
        inputs["latents"] = vae_file(config["vae"]["latent_dim"], "latents.npy")
    return inputs


def final_outputs():
    outputs = [
        f"{DS}/metrics.csv",
        f"{DS}/tables/selection_stats.csv",
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
