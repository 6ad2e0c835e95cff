"""Peak memory and speed of dataset preparation at N and 4N cases: flat memory is the target.

Writes 4N synthetic BraTS-layout cases (4 modalities + label, .nii.gz), and a second folder that
links the first N of them. Each preparation (validation, which reads every file, then the slice
store) runs in a fresh process; its peak resident memory comes from ``os.wait4``, the per-child
form of ``resource.getrusage(RUSAGE_CHILDREN)`` (which would report the largest child so far, not
the one just run). Prints both peaks, their ratio (1.0 = flat), and volumes (files) per second.

    OMP_NUM_THREADS=1 python benchmarks/prepare_memory.py [--cases 6] [--shape 160 160 100]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODALITIES = ["t1", "t1ce", "t2", "flair"]
LABELS = {"label_values": [0, 1, 2, 4], "regions": {"WT": [1, 2, 4], "TC": [1, 4], "ET": [4]}}


def worker(data_root: str, out_dir: str) -> None:
    """Runs in the measured process: validate and prepare, print the seconds it took."""
    from slicepick.data.prepare import prepare_dataset
    from slicepick.data.readers import find_cases

    start = time.perf_counter()
    cases = find_cases("brats", data_root, {"modalities": MODALITIES})
    prepare_dataset(cases, out_dir, modalities=MODALITIES, **LABELS, test_fraction=0.25, split_seed=0)
    print(json.dumps({"seconds": time.perf_counter() - start, "cases": len(cases)}))


def measure(data_root: Path, out_dir: Path) -> dict:
    """Prepare in a child process; its wall time, its own peak RSS (MiB) and the store's size."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    proc = subprocess.Popen([sys.executable, __file__, "--worker", str(data_root), str(out_dir)],
                            stdout=subprocess.PIPE, env=env, text=True)
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"preparation of {data_root} failed (exit {proc.returncode})")
    result = json.loads(output.strip().splitlines()[-1])
    result["peak_rss_mib"] = usage.ru_maxrss / 1024  # Linux reports KiB
    result["store_mib"] = sum(p.stat().st_size for p in out_dir.iterdir()) / 2**20
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=6, help="N (the second run has 4N cases)")
    parser.add_argument("--shape", type=int, nargs=3, default=[160, 160, 100], help="volume size X Y Z")
    parser.add_argument("--workdir", help="where data and stores go (default: a temporary folder, removed)")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker)
        return

    from slicepick.data.synthetic import generate_dataset

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        tmp = Path(tmp)
        n = args.cases
        start = time.perf_counter()
        ids = generate_dataset(tmp / "data_4N", 4 * n, shape=args.shape, seed=0)
        (tmp / "data_N").mkdir()
        for cid in ids[:n]:
            (tmp / "data_N" / cid).symlink_to(tmp / "data_4N" / cid, target_is_directory=True)
        print(f"wrote {4 * n} cases of {args.shape[0]}x{args.shape[1]}x{args.shape[2]} x {len(MODALITIES)} "
              f"modalities in {time.perf_counter() - start:.0f} s; one case is "
              f"{len(MODALITIES) * 4 * args.shape[0] * args.shape[1] * args.shape[2] / 2**20:.0f} MiB as float32")
        rows = {}
        for label, folder in (("N", "data_N"), ("4N", "data_4N")):
            r = measure(tmp / folder, tmp / f"prepared_{label}")
            volumes = r["cases"] * (len(MODALITIES) + 1)
            rows[label] = r
            print(f"{label:>2} = {r['cases']:3d} cases: peak RSS {r['peak_rss_mib']:7.1f} MiB, "
                  f"{r['seconds']:6.1f} s, {volumes / r['seconds']:5.2f} volumes/s "
                  f"({r['cases'] / r['seconds']:.2f} cases/s), store {r['store_mib']:.0f} MiB")
        ratio = rows["4N"]["peak_rss_mib"] / rows["N"]["peak_rss_mib"]
        print(f"peak RSS ratio 4N / N: {ratio:.3f} (1.0 = flat; the store grew "
              f"{rows['4N']['store_mib'] / rows['N']['store_mib']:.1f}x)")


if __name__ == "__main__":
    main()
