"""How long one suggestion step takes: GGS vs random vs a full-pool scoring pass.

GGS's claim (paper, Sec. 5): it needs no pass over the unannotated pool, only the gradient of
the few source samples and a nearest-neighbour search in the latent space. This measures, at pool
sizes N, 4N and 16N with the round's budget a fixed fraction of the pool (paper, BraTS: 1%):

* random         ``rng.choice`` over the unannotated pool
* ggs            Eq. 3-4 for the sources (U-Net gradient, float64 VAE encoding of x and x'),
                 then ``choose_along_gradient`` (KD-tree fit + walks, Eq. 5-6)
* full-pool      one U-Net forward pass (+ argmax) over every unannotated sample: the least
                 that oracle, uncertainty (DAL) and loss-prediction (LL) methods pay per round

Synthetic inputs, stated: latents are a 3-D Gaussian mixture (8 clusters) standing in for the
VAE latents; images are one batch of standard-normal (C, H, W) arrays reused for every batch
(the networks' cost does not depend on pixel values); U-Net and VAE are untrained (same cost as
trained). Networks are the tiny default sizes of config.yaml unless changed on the command line.

Run: ``OMP_NUM_THREADS=1 python benchmarks/ggs_suggestion_time.py --pool-size 500``
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from slicepick.models import build_unet
from slicepick.strategies.ggs import choose_along_gradient, gradient_step, latent_step
from slicepick.vae import build_vae


def best_time(fn, repeats: int) -> float:
    """Fastest of ``repeats`` runs, seconds (the least disturbed by other load on the machine)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def synthetic_latents(n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    centres = rng.normal(scale=2.0, size=(8, d))
    return (centres[rng.integers(0, 8, n)] + 0.5 * rng.normal(size=(n, d))).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pool-size", type=int, default=500, help="N; also runs 4N and 16N")
    parser.add_argument("--budget-fraction", type=float, default=0.01, help="samples added per round / pool")
    parser.add_argument("--image-size", type=int, default=48, help="H = W (divisible by 16)")
    parser.add_argument("--channels", type=int, default=4, help="modalities")
    parser.add_argument("--latent-dim", type=int, default=3)
    parser.add_argument("--unet-features", type=int, nargs=6, default=[16, 32, 64, 128, 256, 16])
    parser.add_argument("--vae-channels", type=int, nargs=4, default=[16, 32, 64, 128])
    parser.add_argument("--batch-size", type=int, default=64, help="full-pool scoring batch")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    device = torch.device(args.device)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    c, hw = args.channels, args.image_size
    unet = build_unet(c, 4, args.unet_features).to(device).eval()
    vae = build_vae(c, hw, hw, args.latent_dim, args.vae_channels).to(device).eval().double()
    batch = torch.randn(args.batch_size, c, hw, hw, device=device)

    def full_pool_pass(n_unannotated: int) -> None:
        with torch.no_grad():
            for i in range(0, n_unannotated, args.batch_size):
                unet(batch[:min(args.batch_size, n_unannotated - i)]).argmax(1)
        if device.type == "cuda":
            torch.cuda.synchronize()

    print(f"device {device}, torch threads {torch.get_num_threads()}, images {c}x{hw}x{hw}, latent dim "
          f"{args.latent_dim}, budget {args.budget_fraction:.1%} of the pool per round, best of {args.repeats}")
    header = f"{'pool N':>8} {'sources=k':>9} {'random s':>10} {'ggs step s':>11} {'ggs choose s':>13} " \
             f"{'ggs total s':>12} {'full pass s':>12} {'full/ggs':>9} {'ggs/random':>11}"
    print(header)
    rows = []
    for n in (args.pool_size, 4 * args.pool_size, 16 * args.pool_size):
        k = max(1, int(round(args.budget_fraction * n)))
        latents = synthetic_latents(n, args.latent_dim, rng)
        ids = np.arange(n)
        sources, candidates = ids[:k], ids[k:]
        source_images = torch.randn(k, c, hw, hw, device=device)
        source_labels = torch.randint(0, 4, (k, hw, hw), device=device)
        state = {}

        def ggs_step():
            for i in range(0, k, 32):  # the batch size suggest() uses
                x = source_images[i:i + 32]
                x_prime = gradient_step(unet, x, source_labels[i:i + 32], 1e-3)
                state.setdefault("z_step", []).append(latent_step(vae, x, x_prime))

        def ggs_choose():
            z = latents[sources].astype(np.float64)
            z_prime = z + 1e-3 * rng.normal(size=z.shape)
            choose_along_gradient(z, z_prime, latents[candidates], candidates, k, angular_threshold=0.5,
                                  rng=np.random.default_rng(0))

        t_random = best_time(lambda: np.random.default_rng(0).choice(candidates, size=k, replace=False), args.repeats)
        t_step = best_time(ggs_step, args.repeats)
        t_choose = best_time(ggs_choose, args.repeats)
        t_full = best_time(lambda: full_pool_pass(len(candidates)), args.repeats)
        t_ggs = t_step + t_choose
        rows.append((n, t_ggs, t_full))
        print(f"{n:>8} {k:>9} {t_random:>10.5f} {t_step:>11.4f} {t_choose:>13.4f} {t_ggs:>12.4f} {t_full:>12.3f} "
              f"{t_full / t_ggs:>9.1f} {t_ggs / t_random:>11.0f}")
    (n0, g0, f0), (n2, g2, f2) = rows[0], rows[-1]
    print(f"growth from N={n0} to 16N={n2}: ggs x{g2 / g0:.1f}, full-pool pass x{f2 / f0:.1f} "
          f"(k grows with N at a fixed budget fraction)")


if __name__ == "__main__":
    main()
