"""Training throughput: the real path (memory-mapped store, batch reads, the default augmentation drawn
fresh per sample and epoch, the shared loop) against the bare model step (same model, batch, threads
and dtype, batches already in memory). Prints slices/s of both and their ratio (goal: >= 0.9).

    python benchmarks/train_throughput.py                      # CPU, the demo's U-Net at 48 x 48
    python benchmarks/train_throughput.py --device cuda        # the paper's U-Net at 240 x 240, batch 32, bf16

On CUDA it also prints the fraction of the GPU's bf16 dense peak reached by the bare step, with FLOPs
counted by torch.utils.flop_counter (--peak-tflops, default the H100 SXM's 989). Without a GPU:
``gpu_fraction_of_peak: not measured``. The two paths are measured alternately, several times, and
the medians compared, so that load from other processes hits both alike.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from slicepick.data.prepare import prepare_dataset  # noqa: E402
from slicepick.data.readers import find_cases  # noqa: E402
from slicepick.data.store import SliceStore  # noqa: E402
from slicepick.data.synthetic import generate_dataset  # noqa: E402
from slicepick.models import build_seeded, unet_spec  # noqa: E402
from slicepick.training import TrainConfig, segmentation_loss, train_segmentation  # noqa: E402

DATASET = {"modalities": ["t1", "t1ce", "t2", "flair"], "label_values": [0, 1, 2, 4],
           "regions": {"WT": [1, 2, 4]}, "test_fraction": 0.25, "split_seed": 0}
DEMO_FEATURES = [8, 16, 32, 64, 64, 8]
PAPER_FEATURES = [32, 64, 128, 256, 512, 32]


def make_store(folder: Path, size: int, n_cases: int, depth: int) -> SliceStore:
    generate_dataset(folder / "raw", n_cases=n_cases, shape=(size, size, depth), seed=0)
    prepare_dataset(find_cases("brats", folder / "raw", DATASET), folder / "store", **DATASET)
    return SliceStore(folder / "store")


def real_path(store, ids, spec, cfg, device, folder: Path) -> float:
    """Slices/s of the shared loop over its epochs after the first (warm-up)."""
    model = build_seeded(spec, 0)
    checkpoint = folder / "checkpoint.pt"
    checkpoint.unlink(missing_ok=True)
    history = train_segmentation(model, store, ids, cfg, device=device, log_csv=folder / "log.csv",
                                 checkpoint=checkpoint)
    timed = history[1:] or history
    return sum(h["n_samples"] for h in timed) / sum(h["seconds"] for h in timed)


def bare_step(store, ids, spec, cfg, device, steps: int) -> tuple[float, torch.nn.Module, torch.Tensor]:
    """Slices/s of forward + loss + backward + Adam step on batches already on the device."""
    cuda = device.type == "cuda"
    model = build_seeded(spec, 0).to(device)
    if cuda:
        model.to(memory_format=torch.channels_last)
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    loss_fn = segmentation_loss(cfg.loss)
    batch = np.asarray(ids[:cfg.batch_size])
    images = torch.as_tensor(np.array(store.images[batch]), device=device)
    labels = torch.as_tensor(np.array(store.labels[batch])[:, None].astype(np.float32), device=device)
    if cuda:
        images = images.contiguous(memory_format=torch.channels_last)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else nullcontext()
    model.train()

    def step():
        optimiser.zero_grad(set_to_none=True)
        with autocast:
            loss = loss_fn(model(images).float(), labels)
        loss.backward()
        optimiser.step()

    for _ in range(3):
        step()
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if cuda:
        torch.cuda.synchronize()
    return steps * len(batch) / (time.perf_counter() - t0), model, images


def train_flops(model, images, cfg) -> float:
    """FLOPs of one training step (forward + backward) on ``images``, counted by torch."""
    from torch.utils.flop_counter import FlopCounterMode

    labels = torch.zeros(images.shape[0], 1, *images.shape[2:], device=images.device)
    with FlopCounterMode(display=False) as counter:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = segmentation_loss(cfg.loss)(model(images).float(), labels)
        loss.backward()
    return float(counter.get_total_flops())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the demo's training.threads)")
    parser.add_argument("--size", type=int, help="in-plane size (default 48 on CPU, 240 on CUDA)")
    parser.add_argument("--batch", type=int, help="batch size (default 16 on CPU, 32 on CUDA)")
    parser.add_argument("--features", help="U-Net features, comma separated (default: demo on CPU, paper on CUDA)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="bf16 dense peak (H100 SXM: 989)")
    args = parser.parse_args()
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        sys.exit("train_throughput: --device cuda but no CUDA device is visible")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    size = args.size or (240 if cuda else 48)
    batch = args.batch or (32 if cuda else 16)
    features = [int(f) for f in args.features.split(",")] if args.features else (PAPER_FEATURES if cuda else DEMO_FEATURES)
    folder = Path(tempfile.mkdtemp(prefix="train-throughput-"))
    try:
        store = make_store(folder, size, n_cases=6, depth=24 if cuda else 40)
        ids = store.pool_ids[: batch * 8]  # eight batches an epoch
        spec = unet_spec(store.n_channels, store.n_classes, features)
        cfg = TrainConfig(epochs=args.epochs, batch_size=batch, lr=1e-3, augment={}, seed=0, loss="dice_ce")
        steps = 8 * (args.epochs - 1)
        real, bare = [], []
        for _ in range(args.repeats):
            bare_sps, model, images = bare_step(store, ids, spec, cfg, device, steps)
            bare.append(bare_sps)
            real.append(real_path(store, ids, spec, cfg, device, folder))
        real_sps, bare_sps = statistics.median(real), statistics.median(bare)
        print(f"device: {device} ({torch.cuda.get_device_name() if cuda else f'{args.threads} thread(s)'})")
        print(f"setting: U-Net {features}, {size} x {size}, batch {batch}, {'bf16 autocast' if cuda else 'float32'}")
        print(f"real_runs_slices_per_s: {', '.join(f'{r:.1f}' for r in real)}")
        print(f"bare_runs_slices_per_s: {', '.join(f'{b:.1f}' for b in bare)}")
        print(f"real_slices_per_s: {real_sps:.1f}")
        print(f"bare_slices_per_s: {bare_sps:.1f}")
        print(f"throughput_ratio: {real_sps / bare_sps:.3f}")
        if cuda:
            flops_per_slice = train_flops(model, images, cfg) / len(images)
            print(f"tflops_per_s_bare: {bare_sps * flops_per_slice / 1e12:.1f}")
            print(f"gpu_fraction_of_peak: {bare_sps * flops_per_slice / (args.peak_tflops * 1e12):.3f}")
        else:
            print("gpu_fraction_of_peak: not measured")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
