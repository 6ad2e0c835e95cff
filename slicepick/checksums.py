"""Content checksums, so that what is tracked does not depend on where a file lives.

A checkpoint's resume fingerprint names its inputs by content: the prepared store by the checksum
``prepare`` wrote into meta.json (computed once while writing; the store is tens of GB at BraTS
scale and is never hashed per job), the previous round's model by hashing the file (megabytes).
"""
from __future__ import annotations

import hashlib
from pathlib import Path


def file_digest(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk_bytes), b""):
            digest.update(block)
    return digest.hexdigest()


def resume_fingerprint(store, previous_model, **settings) -> str:
    """Identifies a round's training run by content: the store's checksum, the previous model's
    bytes (None at round 0) and the run's settings (selection, config, network). A checkpoint left
    by a killed job is resumed only when all of these are unchanged; after an upstream change the
    job starts over."""
    from slicepick.training import fingerprint  # here: the workflow imports file_digest at start-up, without torch

    previous = file_digest(previous_model) if previous_model else None
    return fingerprint(store=store.checksum, previous=previous, **settings)
