"""Suggestion strategies, one module per method, found by name.

Every strategy module defines ``suggest(k, ctx) -> list[int]``: the ``k`` pool sample ids to
annotate next, chosen among ``ctx.unannotated``. Optional module attributes:

``SINGLE_ROUND = True``          the method trains once (``full``) instead of round by round
``initial_selection(ctx, n)``    a round-0 set other than the shared seeded random start
``USES_MODEL = False``           ``suggest`` does not need the current segmentation model
``train_round(...)``             a method's own training step (DAL's ensemble, LL's head)
``NEEDS_GROUND_TRUTH = True``    it reads labels of unannotated samples (oracle, full): refused in annotate mode

A config block under ``methods:`` names the method; ``module:`` picks a module other than the
block's name, so ablations are config variants of one module (``ggs_z10: {module: ggs, ...}``).
"""
from __future__ import annotations

import ast
import functools
import importlib
import pkgutil
from pathlib import Path
from types import ModuleType

from slicepick.checksums import file_digest

_NOT_STRATEGIES = {"base"}


def available() -> list[str]:
    """Names of every strategy module in this package."""
    return sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)])
                  if m.name not in _NOT_STRATEGIES and not m.name.startswith("_"))


def module_name(method: str, method_cfg: dict | None) -> str:
    return (method_cfg or {}).get("module", method)


def get_strategy(name: str) -> ModuleType:
    """The strategy module ``name``; a typo lists the valid choices."""
    names = available()
    if name not in names:
        raise ValueError(f"unknown strategy '{name}'; available: {', '.join(names)}")
    return importlib.import_module(f"{__name__}.{name}")


def module_path(name: str) -> Path:
    """Source file of a strategy."""
    return Path(__file__).parent / f"{name}.py"


def defines(name: str, function: str) -> bool:
    """Whether a strategy module defines ``function``, read without importing it."""
    tree = ast.parse(module_path(name).read_text())
    return any(isinstance(node, ast.FunctionDef) and node.name == function for node in tree.body)


def shares_start(name: str) -> bool:
    """Methods that start from the seeded random set and train the plain U-Net share one round-0
    model per seed: no start of their own, no training step of their own, several rounds."""
    return not (defines(name, "initial_selection") or defines(name, "train_round")
                or declared(name, "SINGLE_ROUND", False))


@functools.lru_cache(maxsize=None)  # read once per workflow start, not once per job
def module_digest(name: str) -> str:
    """Content hash of a strategy's source, a rule param: editing the module reruns only that
    method's jobs, and unlike a path it stays the same when the checkout moves."""
    return file_digest(module_path(name))[:16]


def declared(name: str, constant: str, default=None):
    """A module-level constant of a strategy, read without importing it (no torch at DAG build)."""
    tree = ast.parse(module_path(name).read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == constant for t in node.targets):
            return ast.literal_eval(node.value)
    return default


def n_rounds(name: str, schedule) -> int:
    """Rounds a method runs: one per schedule entry, or one for a single-round method (``full``)."""
    return 1 if declared(name, "SINGLE_ROUND", False) else len(schedule)


def round_fraction(name: str, schedule, round_index: int) -> float:
    """The annotated fraction of the pool a round reports: the round's schedule entry; 1.0 only for
    a single-round method (``full``, trained on the whole pool). A one-entry schedule is valid: its
    methods report that entry, not 1.0."""
    return 1.0 if declared(name, "SINGLE_ROUND", False) else float(schedule[int(round_index)])
