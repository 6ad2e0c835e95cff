"""Logging and threading set-up for one workflow job (called first by every script).

Start-up is measured from the logs (``benchmarks/job_startup.py``): ``start_job`` logs the
process's start time, read from the OS (imports run before the first log line, so the log's first
timestamp is not the start), and ``mark_useful_start`` logs when the job's first useful step begins
(first training step, start of suggestion).
"""
from __future__ import annotations

import logging
import os
import sys
import time
import warnings

_IMPORTED_AT = time.time()  # fallback start: the interpreter reached this module

PROCESS_START = "process start"
USEFUL_START = "first useful step"


def process_start_time() -> float:
    """Unix time at which this process started.

    Linux: the process's start in clock ticks since boot (/proc/self/stat, field 22) against the
    time since boot (/proc/uptime), both read now, so the result is good to a clock tick (10 ms).
    Elsewhere: when this module was imported (later than the true start by the imports before it).
    """
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        now = time.time()
        started_after_boot = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22 of stat(5)
        return now - (uptime - started_after_boot)
    except (OSError, ValueError, IndexError):
        return _IMPORTED_AT


def _rule_name() -> str:
    """The Snakemake rule of this job (its script's ``snakemake`` object), or '-' outside Snakemake."""
    job = getattr(sys.modules.get("__main__"), "snakemake", None)
    return str(getattr(job, "rule", None) or "-")


def start_job(log_path=None, threads: int | None = None) -> logging.Logger:
    """Send library log lines to the job's log file (and stderr), one line per event."""
    handlers = [logging.StreamHandler(sys.stderr)]
    if log_path:
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        handlers=handlers, force=True)
    logging.captureWarnings(True)
    warnings.filterwarnings("ignore", category=FutureWarning, module="monai")
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    log = logging.getLogger("slicepick")
    start = process_start_time()
    log.info("%s %.3f (unix time), %.3f s before this line; rule %s", PROCESS_START, start, time.time() - start,
             _rule_name())
    return log


def mark_useful_start(log: logging.Logger | None = None) -> float:
    """Log that the job's first useful step starts now; returns the seconds since process start."""
    seconds = time.time() - process_start_time()
    (log or logging.getLogger("slicepick")).info("%s %.3f s after process start", USEFUL_START, seconds)
    return seconds
