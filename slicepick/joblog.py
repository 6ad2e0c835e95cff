"""Logging and threading set-up for one workflow job (called first by every script)."""
from __future__ import annotations

import logging
import sys
import warnings


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
    return logging.getLogger("slicepick")
