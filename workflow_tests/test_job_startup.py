"""benchmarks/job_startup.py: start-up per job from its log, wall time from Snakemake's benchmark files."""
from __future__ import annotations

import importlib.util
import logging
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from slicepick import joblog

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("job_startup", REPO / "benchmarks" / "job_startup.py")
job_startup = importlib.util.module_from_spec(_spec)
sys.modules["job_startup"] = job_startup  # dataclasses look their module up there
_spec.loader.exec_module(job_startup)

BENCH_HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def log_text(rule: str, start: float, before: float, useful: float | None, end: str) -> str:
    lines = [f"2026-11-28 05:00:07,000 INFO slicepick: process start {start:.3f} (unix time), {before:.3f} s before "
             f"this line; rule {rule}",
             "2026-11-28 05:00:07,500 INFO slicepick.rounds: loading"]
    if useful is not None:
        lines.append(f"2026-11-28 05:00:08,000 INFO slicepick: first useful step {useful:.3f} s after process start")
    lines.append(f"{end} INFO slicepick.rounds: done")
    return "\n".join(lines) + "\n"


def test_shares_per_rule_and_total_from_logs_and_benchmark_files(tmp_path, capsys):
    results = tmp_path / "results" / "tiny"
    logs = tmp_path / "logs" / "tiny"
    start = time.mktime(time.strptime("2026-11-28 05:00:00", "%Y-%m-%d %H:%M:%S"))  # log times are local
    write(logs / "random/seed0/round0/train.log", log_text("train", start, 6.0, 8.0, "2026-11-28 05:00:30,000"))
    write(logs / "random/seed0/round1/train.log", log_text("train", start, 5.0, 7.0, "2026-11-28 05:00:30,000"))
    write(logs / "random/seed0/round1/suggest.log", log_text("suggest", start, 4.0, 6.0, "2026-11-28 05:00:30,000"))
    write(logs / "aggregate.log", log_text("aggregate", start, 3.0, None, "2026-11-28 05:00:30,000"))
    write(logs / "old.log", "2026-11-28 05:00:07,000 INFO a log from before the markers\n")  # ignored
    write(results / "benchmarks/train/random/seed0/round0.tsv", BENCH_HEADER + "20.0\t0:00:20\t1\t1\t1\t1\t0\t0\t0\t1\n")
    write(results / "benchmarks/train/random/seed0/round1.tsv",
          BENCH_HEADER + "10.0\t0:00:10\t1\t1\t1\t1\t0\t0\t0\t1\n" + "30.0\t0:00:30\t1\t1\t1\t1\t0\t0\t0\t1\n")
    write(results / "benchmarks/suggest/random/seed0/round1.tsv", BENCH_HEADER + "12.0\t0:00:12\t1\t1\t1\t1\t0\t0\t0\t1\n")
    job_startup.main([str(results)])
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:-1]}
    # train: start-up 8 + 7 s of wall 20 + mean(10, 30) s; suggest: 6 of 12 s
    assert rows["train"][1:6] == ["2", "2", "15.0", "40.0", "0.375"]
    assert rows["suggest"][1:6] == ["1", "1", "6.0", "12.0", "0.500"]
    # aggregate has no marker and no benchmark file: its imports (3 s) over its log's span
    span = time.mktime(time.strptime("2026-11-28 05:00:30", "%Y-%m-%d %H:%M:%S")) - start
    assert rows["aggregate"][1:4] == ["1", "0", "3.0"] and float(rows["aggregate"][4]) == pytest.approx(span, abs=0.1)
    assert span == pytest.approx(30.0) and " ".join(rows["aggregate"][-2:]) == "log spans"
    total = (15 + 6 + 3) / (40 + 12 + span)
    assert out.splitlines()[-1] == f"startup_share: {total:.3f}"


def test_markers_written_by_joblog_are_the_ones_parsed(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules["__main__"], "snakemake", SimpleNamespace(rule="suggest"), raising=False)
    path = tmp_path / "job.log"
    log = joblog.start_job(path)
    seconds = joblog.mark_useful_start(log)
    logging.shutdown()
    job = job_startup.read_log(path)
    assert job.rule == "suggest" and job.marked
    assert job.startup == pytest.approx(seconds, abs=1e-3)
    started = joblog.process_start_time()
    assert 0 < time.time() - started < 24 * 3600  # this test process started before now, not in the future
    assert abs(joblog.process_start_time() - started) < 0.05  # stable to about a clock tick


def test_bad_benchmark_file_is_named(tmp_path):
    path = write(tmp_path / "x.tsv", "wall\n1\n")
    with pytest.raises(ValueError, match="x.tsv: not a Snakemake benchmark file"):
        job_startup.read_benchmark(path)
