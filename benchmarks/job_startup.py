"""Share of the workflow's job time spent starting up, per rule and in total, from a finished run.

    python benchmarks/job_startup.py RESULTS_DIR [--logs LOGS_DIR] [--benchmarks BENCH_DIR]

Per job, start-up is the time from process start to the job's first useful step, both read from the
job's log (``slicepick.joblog``): ``process start`` carries the start time the OS gives the process
(imports come before the first log line, so the log's first timestamp is too late) and the rule;
``first useful step`` (``joblog.mark_useful_start``: first training step, start of suggestion) the
seconds since then. A job that logs no such marker (tables, figures, data preparation) counts its
time until ``start_job`` ran, i.e. its imports. Wall time per rule is the sum of Snakemake's benchmark
files of that rule (column ``s``; the mean where a file holds repeats); a rule without benchmark files
falls back to its logs' span (process start to last line) and is marked so.

Defaults for RESULTS_DIR = ``<workdir>/results/<dataset>``: logs in ``<workdir>/logs/<dataset>``,
benchmark files under ``RESULTS_DIR/benchmarks`` (else ``<workdir>/results/benchmarks/<dataset>``).
Ends with ``startup_share:`` (all jobs' start-up over all jobs' wall time).
"""
from __future__ import annotations

import argparse
import csv
import re
import sys
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

PROCESS_START = re.compile(r"process start (?P<start>[\d.]+) \(unix time\), (?P<before>[\d.]+) s before this line; "
                           r"rule (?P<rule>\S+)")
USEFUL_START = re.compile(r"first useful step (?P<seconds>[\d.]+) s after process start")
TIMESTAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


@dataclass
class JobLog:
    path: Path
    rule: str
    startup: float  # seconds from process start to the first useful step (or to start_job)
    marked: bool  # whether the job logged its first useful step
    span: float | None  # process start to the last timestamped line, seconds


def read_log(path: Path) -> JobLog | None:
    """The start-up of one job from its log; None for a log without a ``process start`` line."""
    start = rule = before = useful = last = None
    for line in path.read_text(errors="replace").splitlines():
        if start is None and (m := PROCESS_START.search(line)):
            start, before, rule = float(m["start"]), float(m["before"]), m["rule"]
        elif start is not None and useful is None and (m := USEFUL_START.search(line)):
            useful = float(m["seconds"])
        if m := TIMESTAMP.match(line):
            last = m[1]
    if start is None:
        return None
    span = datetime.strptime(last, "%Y-%m-%d %H:%M:%S,%f").timestamp() - start if last else None
    return JobLog(path, rule, useful if useful is not None else before, useful is not None, span)


def read_benchmark(path: Path) -> float:
    """Wall seconds of one Snakemake benchmark file (column ``s``; mean over repeats)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows or "s" not in rows[0]:
        raise ValueError(f"{path}: not a Snakemake benchmark file (no column 's' or no rows)")
    return sum(float(r["s"]) for r in rows) / len(rows)


def benchmark_rule(path: Path, root: Path, rules: set[str]) -> str:
    """The rule a benchmark file belongs to: the first folder under ``root`` named like a known rule."""
    parts = path.relative_to(root).parts[:-1]
    for part in parts:
        if part in rules:
            return part
    return parts[0] if parts else path.stem


def startup_table(logs_dir: Path, bench_dir: Path | None) -> tuple[list[dict], dict]:
    """One row per rule and a total: jobs, marked jobs, start-up and wall seconds, share."""
    jobs = [j for j in (read_log(p) for p in sorted(logs_dir.rglob("*.log"))) if j is not None]
    if not jobs:
        raise SystemExit(f"job_startup: no job log with a 'process start' line under {logs_dir}")
    by_rule: dict[str, list[JobLog]] = defaultdict(list)
    for job in jobs:
        by_rule[job.rule].append(job)
    walls: dict[str, list[float]] = defaultdict(list)
    if bench_dir is not None:
        for path in sorted(bench_dir.rglob("*.tsv")):
            walls[benchmark_rule(path, bench_dir, set(by_rule))].append(read_benchmark(path))
    rows = []
    for rule in sorted(by_rule):
        rule_jobs = by_rule[rule]
        startup = sum(j.startup for j in rule_jobs)
        if walls.get(rule):
            wall, source = sum(walls[rule]), f"{len(walls[rule])} benchmark files"
        else:
            wall, source = sum(j.span or 0.0 for j in rule_jobs), "log spans"
        rows.append({"rule": rule, "jobs": len(rule_jobs), "marked": sum(j.marked for j in rule_jobs),
                     "startup_s": startup, "wall_s": wall, "share": startup / wall if wall > 0 else float("nan"),
                     "wall_from": source})
    total_startup = sum(r["startup_s"] for r in rows)
    total_wall = sum(r["wall_s"] for r in rows)
    total = {"rule": "total", "jobs": sum(r["jobs"] for r in rows), "marked": sum(r["marked"] for r in rows),
             "startup_s": total_startup, "wall_s": total_wall,
             "share": total_startup / total_wall if total_wall > 0 else float("nan"), "wall_from": ""}
    return rows, total


def default_dirs(results_dir: Path) -> tuple[Path, Path | None]:
    dataset, workdir = results_dir.name, results_dir.parent.parent
    logs = workdir / "logs" / dataset
    for bench in (results_dir / "benchmarks", results_dir.parent / "benchmarks" / dataset):
        if bench.is_dir():
            return logs, bench
    return logs, None


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results_dir", type=Path)
    parser.add_argument("--logs", type=Path, help="job logs (default <workdir>/logs/<dataset>)")
    parser.add_argument("--benchmarks", type=Path, help="Snakemake benchmark files (default: see above)")
    args = parser.parse_args(argv)
    if not args.results_dir.is_dir():
        raise SystemExit(f"job_startup: {args.results_dir} is not a folder (give results/<dataset> of a finished run)")
    logs, bench = default_dirs(args.results_dir)
    logs, bench = args.logs or logs, args.benchmarks or bench
    if not logs.is_dir():
        raise SystemExit(f"job_startup: no job logs at {logs} (pass --logs)")
    rows, total = startup_table(logs, bench)
    if bench is None:
        print("no benchmark files found: wall times are the logs' spans", file=sys.stderr, flush=True)
    print(f"{'rule':<20} {'jobs':>5} {'marked':>6} {'start-up s':>11} {'wall s':>9} {'share':>6}  wall from")
    for r in [*rows, total]:
        print(f"{r['rule']:<20} {r['jobs']:>5} {r['marked']:>6} {r['startup_s']:>11.1f} {r['wall_s']:>9.1f} "
              f"{r['share']:>6.3f}  {r['wall_from']}")
    print(f"startup_share: {total['share']:.3f}")


if __name__ == "__main__":
    main()
