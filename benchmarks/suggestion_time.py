"""How long the whole suggestion step takes, per method, at pool sizes N, 4N and 16N.

    OMP_NUM_THREADS=1 python benchmarks/suggestion_time.py [--pool-size 2250] [--methods random ggs ...]

Each (method, pool size) runs in a fresh process that imports first (not timed), then times the
workflow's own suggestion job, ``rounds.suggest_next``: it opens the memory-mapped slice store, loads
the method's model (and VAE), reads the selection, suggests and writes the next selection, inference
included. ClsMC's time also counts the computation of its ranking as far as the schedule's last budget
(``clsmc.write_ranking``, the ``clsmc_ranking`` job, run once per latent space, not per round and
seed): the case of a round that has to wait for it. Peak memory is the process's ``ru_maxrss``
(imports included; the inputs are built in another process, as ``ru_maxrss`` survives fork and exec).

The round is round 0 -> 1 of the BraTS schedule (0.5% of the pool annotated, 0.5% more asked for),
so GGS has 0.5% of the pool as gradient sources and every method's work grows with N.

Synthetic inputs, stated: a slice store of N pool slices (cases of 150 slices, one test case) at
48 x 48 with 4 channels of standard-normal values and a small square tumour in one slice in five;
latents a 3-D Gaussian mixture (8 blobs) standing in for the VAE's; untrained networks (the cost does
not depend on the weights) of ``--unet-features`` (default: the test suite's tiny U-Net, so that the
benchmark fits in 15 minutes on 2 cores; the pool passes of oracle, DAL and LL scale with the
network's size) and the default VAE. Stores are written once per pool size to a temporary folder.

Ends with ``name: value`` lines: ``latent_choose_seconds`` (slower of GGS and ClsMC at the largest
pool), ``scaling_16x`` (worst method's time at 16N over its time at N), ``peak_gb`` (worst method).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
METHODS = ["random", "ggs", "clsmc", "dal", "ll", "oracle"]
SCHEDULE = [0.005, 0.01]  # BraTS's first two budgets (GGS paper, Sec. 3)
SLICES_PER_CASE = 150
N_CLASSES = 4
LATENT_DIM = 3


def build_inputs(folder: Path, n_pool: int, args) -> None:
    """Slice store, latents, VAE and each method's model for a pool of ``n_pool`` slices."""
    import numpy as np
    import pandas as pd

    from slicepick.data.prepare import SliceStore
    from slicepick.models import EnsembleMean, build_seeded, ensemble_spec, save_model, unet_spec
    from slicepick.rounds import budget_sizes, write_selection
    from slicepick.seeding import stream_seed
    from slicepick.strategies import ll
    from slicepick.vae import build_vae, save_vae

    rng = np.random.default_rng(0)
    hw, c = args.image_size, args.channels
    store = folder / "prepared"
    store.mkdir(parents=True)
    n_test = SLICES_PER_CASE
    n = n_pool + n_test
    images = np.memmap(store / "images.f32", dtype=np.float32, mode="w+", shape=(n, c, hw, hw))
    labels = np.memmap(store / "labels.u8", dtype=np.uint8, mode="w+", shape=(n, hw, hw))
    for start in range(0, n, 1024):
        stop = min(n, start + 1024)
        images[start:stop] = rng.standard_normal((stop - start, c, hw, hw), dtype=np.float32)
        tumour = np.arange(start, stop) % 5 == 0
        labels[start:stop] = 0
        labels[start:stop][tumour, hw // 3:hw // 2, hw // 3:hw // 2] = rng.integers(1, N_CLASSES, size=(tumour.sum(), 1, 1))
    images.flush()
    labels.flush()
    case = np.arange(n) // SLICES_PER_CASE
    pd.DataFrame({"sample_id": np.arange(n), "case": [f"case{i:04d}" for i in case], "z": np.arange(n) % SLICES_PER_CASE,
                  "subset": np.where(np.arange(n) < n_pool, "train", "test")}).to_csv(store / "index.csv", index=False)
    (store / "meta.json").write_text(json.dumps({"images_shape": [n, c, hw, hw], "label_values": list(range(N_CLASSES))}))

    centres = rng.normal(scale=2.0, size=(8, LATENT_DIM))
    latents = centres[rng.integers(0, 8, n)] + 0.5 * rng.normal(size=(n, LATENT_DIM))
    np.save(folder / "latents.npy", latents.astype(np.float32))
    save_vae(folder / "vae.pt", build_vae(c, hw, hw, LATENT_DIM, args.vae_channels))

    spec = unet_spec(c, N_CLASSES, args.unet_features)
    save_model(folder / "unet.pt", build_seeded(spec, 0), spec)
    members = [build_seeded(spec, stream_seed(0, "init", i)) for i in range(args.dal_members)]
    save_model(folder / "dal.pt", EnsembleMean(members), ensemble_spec([spec] * args.dal_members))
    save_model(folder / "ll.pt", build_seeded(ll.ll_spec(spec), 0), ll.ll_spec(spec))

    slice_store = SliceStore(store)
    n0 = budget_sizes(SCHEDULE, n_pool)[0]
    start_ids = np.sort(rng.choice(slice_store.pool_ids, size=n0, replace=False))
    write_selection(folder / "selection.csv", slice_store, pd.DataFrame({"sample_id": start_ids, "round_added": 0}))


def run_method(folder: Path, method: str, out: Path) -> dict:
    """Child process: imports (not timed), then the suggestion job as the workflow runs it."""
    import numpy as np  # noqa: F401

    from slicepick.rounds import suggest_next
    from slicepick.strategies import get_strategy

    strategy = get_strategy(method)  # imports the method's module (torch, MONAI, scikit-learn) before the clock
    model = {"dal": "dal.pt", "ll": "ll.pt"}.get(method, "unet.pt")
    inputs = {"ggs": {"vae": str(folder / "vae.pt"), "latents": str(folder / "latents.npy")},
              "clsmc": {"ranking": str(out.with_suffix(".ranking.npy"))}}.get(method, {})
    cached = hasattr(strategy, "write_ranking")
    if method == "clsmc" and not cached:  # a checkout from before the cached ranking (README's "before")
        inputs = {"latents": str(folder / "latents.npy")}
    timings = {}
    t0 = time.perf_counter()
    if method == "clsmc" and cached:
        from slicepick.data.prepare import SliceStore

        from slicepick.rounds import budget_sizes

        pool = SliceStore(folder / "prepared").pool_ids
        strategy.write_ranking(inputs["ranking"], pool, folder / "latents.npy", {}, budget_sizes(SCHEDULE, len(pool))[-1])
        timings["ranking_seconds"] = time.perf_counter() - t0
    suggest_next(folder / "prepared", folder / model, folder / "selection.csv", out, method=method, method_cfg={},
                 seed=0, round_index=0, schedule=SCHEDULE, inputs=inputs, device="cpu")
    timings["seconds"] = time.perf_counter() - t0
    timings["peak_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # KiB on Linux
    return timings


def child(argv) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--method", required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--build", type=int, help="build the inputs for this pool size instead")
    parser.add_argument("--build-args")
    args = parser.parse_args(argv)
    if args.build:
        build_inputs(args.folder, args.build, argparse.Namespace(**json.loads(args.build_args)))
        return
    import torch

    torch.set_num_threads(args.threads)  # as the workflow's start_job does with the rule's threads
    print(json.dumps(run_method(args.folder, args.method, args.folder / f"selection_{args.method}.csv")))


def cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pool-size", type=int, default=2250, help="N; also runs 4N and 16N (default 16N = 36,000)")
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    parser.add_argument("--image-size", type=int, default=48, help="H = W (divisible by 16)")
    parser.add_argument("--channels", type=int, default=4, help="modalities")
    parser.add_argument("--unet-features", type=int, nargs=6, default=[4, 8, 8, 16, 16, 4])
    parser.add_argument("--vae-channels", type=int, nargs=4, default=[8, 16, 32, 64])
    parser.add_argument("--dal-members", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each suggestion process")
    args = parser.parse_args(argv)

    started, suggestion_cpu = time.perf_counter(), 0.0
    sizes = [args.pool_size, 4 * args.pool_size, 16 * args.pool_size]
    env_python = [sys.executable, str(Path(__file__).resolve())]
    results: dict[tuple[str, int], dict] = {}
    print(f"images {args.channels}x{args.image_size}x{args.image_size}, U-Net features {args.unet_features}, "
          f"VAE channels {args.vae_channels}, DAL members {args.dal_members}, {args.threads} thread(s), "
          f"round 0 -> 1 of {SCHEDULE}")
    print(f"{'method':<8} {'pool':>7} {'seconds':>9} {'peak GB':>8}  note")
    with tempfile.TemporaryDirectory(prefix="suggestion-time-") as tmp:
        for n in sizes:
            folder = Path(tmp) / f"n{n}"
            t0 = time.perf_counter()
            # in a process of its own: ru_maxrss survives fork and exec, so a parent that wrote the
            # store would pass its resident size on to every suggestion process
            subprocess.run([*env_python, "--child", "--folder", str(folder), "--method", "-", "--build", str(n),
                            "--build-args", json.dumps(vars(args))], check=True, cwd=REPO)
            print(f"(inputs for N={n} built in {time.perf_counter() - t0:.1f} s)", flush=True)
            for method in args.methods:
                before = cpu_of_children()
                run = subprocess.run([*env_python, "--child", "--folder", str(folder), "--method", method,
                                      "--threads", str(args.threads)],
                                     capture_output=True, text=True, cwd=REPO)
                if run.returncode != 0:
                    raise RuntimeError(f"{method} at N={n} failed:\n{run.stderr[-3000:]}")
                row = json.loads(run.stdout.strip().splitlines()[-1])
                suggestion_cpu += cpu_of_children() - before
                results[method, n] = row
                note = f"ranking {row['ranking_seconds']:.2f} s (once per latent space)" if "ranking_seconds" in row else ""
                print(f"{method:<8} {n:>7} {row['seconds']:>9.2f} {row['peak_gb']:>8.2f}  {note}", flush=True)
            for path in folder.glob("prepared/*.f32"):
                path.unlink()  # free the disk before the next, larger store
    print(f"benchmark wall {time.perf_counter() - started:.0f} s; CPU time of the suggestion processes, imports included, "
          f"{suggestion_cpu:.0f} s (what their wall time approaches on a quiet machine at 1 thread)")
    largest = sizes[-1]
    latent = [results[m, largest]["seconds"] for m in ("ggs", "clsmc") if (m, largest) in results]
    ratios = {m: results[m, sizes[-1]]["seconds"] / results[m, sizes[0]]["seconds"] for m in args.methods}
    worst = max(ratios, key=ratios.get)
    print("time at 16N / time at N: " + ", ".join(f"{m} {r:.1f}" for m, r in ratios.items()))
    print("time at 16N: " + ", ".join(f"{m} {results[m, largest]['seconds']:.1f} s" for m in args.methods))
    if latent:
        print(f"latent_choose_seconds: {max(latent):.2f}")
    print(f"scaling_16x: {ratios[worst]:.2f}  ({worst})")
    print(f"peak_gb: {max(r['peak_gb'] for r in results.values()):.2f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        sys.path.insert(0, str(REPO))
        child(sys.argv[2:])
    else:
        sys.path.insert(0, str(REPO))
        main()
